//! Retrieved chunks as the LLM sees them: a system-prompt section within a token budget
//! (`rag_inject_before_llm`), or the `searchKnowledgeBase` tool's JSON result.
//!
//! Tokens are estimated, not counted: [`estimate_tokens`] takes one token per
//! [`CHARS_PER_TOKEN`] characters, rounded up (OpenAI's rule of thumb for English; no
//! tokenizer is shipped, and a budget is a bound on prompt growth, not an exact count).

use serde_json::{Value, json};

use crate::search::SearchHit;

/// Characters per token of the estimate.
pub const CHARS_PER_TOKEN: usize = 4;

/// The estimated tokens of `text`: characters / [`CHARS_PER_TOKEN`], rounded up.
pub fn estimate_tokens(text: &str) -> usize {
    text.chars().count().div_ceil(CHARS_PER_TOKEN)
}

/// The first line of the injected section.
pub const CONTEXT_HEADER: &str = "Knowledge base excerpts for the caller's last question. \
Answer from them when they cover it; do not mention them or make up facts they do not hold.";

/// Where a chunk comes from, in words: `Opening hours.md, page 2, section "Hours"`.
pub fn source_label(hit: &SearchHit) -> String {
    let c = &hit.chunk;
    let mut label = c.document_name.clone();
    if let Some(page) = c.page {
        label.push_str(&format!(", page {page}"));
    }
    if let Some(section) = c.section.as_deref().filter(|s| !s.is_empty()) {
        label.push_str(&format!(", section \"{section}\""));
    }
    label
}

/// The prompt section for `hits` (best first) of at most `budget_tokens` estimated tokens,
/// header included: whole excerpts while they fit, then the next one cut to what is left (at
/// a character boundary, marked with `…`). `None` when there is no hit or the budget cannot
/// hold the header and any excerpt text.
pub fn render_context(
    hits: &[SearchHit],
    budget_tokens: usize,
    include_metadata: bool,
) -> Option<String> {
    let budget_chars = budget_tokens.saturating_mul(CHARS_PER_TOKEN);
    let mut out = String::from(CONTEXT_HEADER);
    let mut used = out.chars().count();
    let mut added = 0;
    for (i, hit) in hits.iter().enumerate() {
        let head = if include_metadata {
            format!("\n\n[{}] ({})\n", i + 1, source_label(hit))
        } else {
            format!("\n\n[{}]\n", i + 1)
        };
        let head_len = head.chars().count();
        let text = hit.chunk.content.trim();
        let text_len = text.chars().count();
        if used + head_len + text_len <= budget_chars {
            out.push_str(&head);
            out.push_str(text);
            used += head_len + text_len;
            added += 1;
            continue;
        }
        // Room for part of this one (the ellipsis takes one character)?
        let room = budget_chars.saturating_sub(used + head_len + 1);
        if room >= 1 {
            out.push_str(&head);
            out.extend(text.chars().take(room));
            out.push('…');
            added += 1;
        }
        break;
    }
    (added > 0).then_some(out)
}

/// The `searchKnowledgeBase` tool's result: `{"ok": true, "results": [{"text", "similarity",
/// and with metadata "document", "page", "section"}]}`, best first.
pub fn tool_result(hits: &[SearchHit], include_metadata: bool) -> Value {
    let results: Vec<Value> = hits
        .iter()
        .map(|h| {
            let mut r = json!({
                "text": h.chunk.content,
                "similarity": (f64::from(h.similarity) * 1000.0).round() / 1000.0,
            });
            if include_metadata {
                r["document"] = json!(h.chunk.document_name);
                r["page"] = json!(h.chunk.page);
                r["section"] = json!(h.chunk.section);
            }
            r
        })
        .collect();
    if results.is_empty() {
        json!({"ok": true, "results": [], "note": "nothing in the knowledge base matches"})
    } else {
        json!({"ok": true, "results": results})
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_store::ChunkRow;

    fn hit(text: &str, page: Option<i64>) -> SearchHit {
        SearchHit {
            chunk: ChunkRow {
                id: 1,
                document_id: 1,
                document_name: "faq.pdf".into(),
                position: 0,
                page,
                section: Some("Hours".into()),
                content: text.into(),
            },
            similarity: 0.91234,
            score: 0.03,
        }
    }

    #[test]
    fn estimate_rounds_up() {
        assert_eq!(estimate_tokens(""), 0);
        assert_eq!(estimate_tokens("abcd"), 1);
        assert_eq!(estimate_tokens("abcde"), 2);
        assert_eq!(estimate_tokens("éééé"), 1);
    }

    #[test]
    fn context_stays_within_budget() {
        let hits = vec![hit(&"a".repeat(400), Some(2)), hit(&"b".repeat(400), None)];
        let all = render_context(&hits, 10_000, true).unwrap();
        assert!(all.contains("[1] (faq.pdf, page 2, section \"Hours\")"));
        assert!(all.contains("[2] (faq.pdf, section \"Hours\")"));
        let header_tokens = estimate_tokens(CONTEXT_HEADER);
        for budget in [
            header_tokens + 20,
            header_tokens + 110,
            header_tokens + 150,
            400,
        ] {
            let c = render_context(&hits, budget, true).unwrap();
            assert!(
                estimate_tokens(&c) <= budget,
                "{budget}: {}",
                estimate_tokens(&c)
            );
        }
        // Second excerpt cut, first whole.
        let c = render_context(&hits, header_tokens + 150, true).unwrap();
        assert!(c.contains(&"a".repeat(400)));
        assert!(c.ends_with('…'));
        // No room for any excerpt text.
        assert_eq!(render_context(&hits, header_tokens, true), None);
        assert_eq!(render_context(&[], 1000, true), None);
        // Without metadata no source is named.
        assert!(
            !render_context(&hits, 1000, false)
                .unwrap()
                .contains("faq.pdf")
        );
    }

    #[test]
    fn tool_result_shape() {
        let v = tool_result(&[hit("Nine to five.", Some(1))], true);
        assert_eq!(v["results"][0]["text"], "Nine to five.");
        assert_eq!(v["results"][0]["document"], "faq.pdf");
        assert_eq!(v["results"][0]["similarity"], 0.912);
        let v = tool_result(&[hit("x", None)], false);
        assert!(v["results"][0].get("document").is_none());
        assert_eq!(tool_result(&[], true)["results"], json!([]));
    }
}
