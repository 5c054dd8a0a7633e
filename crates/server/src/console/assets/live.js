// Live calls: one EventSource on the live-calls stream; each call gets a card with its
// transcript as it happens and a per-turn latency waterfall (STT final, endpointing, LLM first
// token, first TTS audio, first frame out, each measured from the end of the caller's speech),
// with barge-ins and backchannels marked.
"use strict";

(function () {
  const { el, svg, ms } = window.Switchboard;
  const root = document.getElementById("live");
  if (!root) return;
  const streamUrl = root.dataset.stream;
  const list = document.getElementById("live-calls");
  const status = document.getElementById("live-status");
  const empty = document.getElementById("live-empty");
  const calls = new Map(); // call_id -> {card, transcript, waterfall, turns, interim}

  // Waterfall segments: [css class, label, from field, to field].
  const SEGMENTS = [
    ["seg-stt", "STT final", "user_speech_end_ms", "stt_final_ms"],
    ["seg-endpoint", "endpointing", "stt_final_ms", "llm_request_ms"],
    ["seg-llm", "LLM first token", "llm_request_ms", "llm_first_token_ms"],
    ["seg-tts", "first TTS audio", "llm_first_token_ms", "tts_first_byte_ms"],
    ["seg-out", "first frame out", "tts_first_byte_ms", "first_audio_sent_ms"],
  ];
  const MAX_ENDED_SHOWN = 20;

  function setStatus(text, cls) {
    status.textContent = text;
    status.className = cls;
  }

  function refreshEmpty() {
    empty.hidden = calls.size > 0;
  }

  function addCall(c) {
    if (calls.has(c.call_id)) return calls.get(c.call_id);
    const transcript = el("ol", { class: "transcript" });
    const waterfall = el("div", { class: "waterfall" });
    const state = el("span", { class: "status in-progress" }, "in progress");
    const started = c.started_at ? new Date(c.started_at).toLocaleTimeString() : "";
    const card = el(
      "article",
      { class: "live-call", id: "live-call-" + c.call_id, "data-call-id": c.call_id },
      el("h3", {}, el("a", { href: "/console/calls/" + c.call_id }, c.call_sid || "call " + c.call_id), " ", state),
      el("div", { class: "meta" }, (c.from || "?") + " → " + (c.to || "?"),
        c.assistant_id ? " · assistant " + c.assistant_id : "", started ? " · since " + started : ""),
      el("h4", {}, "Latency per turn"),
      waterfall,
      el("h4", {}, "Transcript"),
      transcript,
    );
    list.prepend(card);
    const entry = { card, transcript, waterfall, state, turns: new Map(), interim: new Map(), ended: false };
    calls.set(c.call_id, entry);
    refreshEmpty();
    return entry;
  }

  function entryFor(callId) {
    return calls.get(callId) || addCall({ call_id: callId });
  }

  function line(entry, cls, at, text) {
    const li = el("li", { class: cls }, el("span", { class: "at" }, ms(at)), text);
    entry.transcript.append(li);
    entry.transcript.scrollTop = entry.transcript.scrollHeight;
    return li;
  }

  function onTranscript(t) {
    const entry = entryFor(t.call_id);
    const key = t.role;
    const previous = entry.interim.get(key);
    if (previous) previous.remove();
    entry.interim.delete(key);
    const who = t.role === "user" ? (t.backchannel ? "Caller (backchannel): " : "Caller: ") : "Bot: ";
    const cls = t.role + (t.is_final ? "" : " interim") + (t.backchannel ? " backchannel" : "");
    const li = line(entry, cls, t.at_ms, who + t.text);
    if (!t.is_final) entry.interim.set(key, li);
  }

  function drawWaterfall(entry) {
    const turns = [...entry.turns.values()].sort((a, b) => a.turn_index - b.turn_index);
    const rowH = 18, labelW = 70, width = 440, pad = 4;
    let maxSpan = 500;
    for (const t of turns) {
      if (t.user_speech_end_ms !== null && t.first_audio_sent_ms !== null) {
        maxSpan = Math.max(maxSpan, t.first_audio_sent_ms - t.user_speech_end_ms);
      }
    }
    const scale = (width - labelW - 60) / maxSpan;
    const height = turns.length * rowH + 2 * pad;
    const chart = svg("svg", { class: "timeline", viewBox: `0 0 ${width} ${height}`, role: "img",
      "aria-label": "latency waterfall" });
    turns.forEach((t, i) => {
      const y = pad + i * rowH;
      chart.append(svg("text", { class: "lane", x: 2, y: y + 12 }, "turn " + t.turn_index));
      const origin = t.user_speech_end_ms;
      if (origin !== null && origin !== undefined) {
        for (const [cls, label, from, to] of SEGMENTS) {
          const a = t[from], b = t[to];
          if (a === null || a === undefined || b === null || b === undefined || b < a) continue;
          const rect = svg("rect", { class: cls, x: labelW + (a - origin) * scale, y: y + 3,
            width: Math.max(1, (b - a) * scale), height: rowH - 6 });
          rect.append(svg("title", {}, `${label}: ${ms(b - a)}`));
          chart.append(rect);
        }
        const end = t.first_audio_sent_ms;
        const total = end !== null && end !== undefined ? ms(end - origin) : "…";
        const x = labelW + ((end ?? origin) - origin) * scale + 4;
        chart.append(svg("text", { class: "label", x, y: y + 12 },
          total + (t.interrupted ? " ✂ barged in" : "")));
      } else {
        chart.append(svg("text", { class: "label", x: labelW, y: y + 12 },
          "no caller speech end" + (t.interrupted ? " ✂ barged in" : "")));
      }
    });
    entry.waterfall.replaceChildren(chart);
  }

  function onTurn(t) {
    const entry = entryFor(t.call_id);
    entry.turns.set(t.turn_index, t);
    drawWaterfall(entry);
  }

  function onEnded(e) {
    const entry = entryFor(e.call_id);
    entry.ended = true;
    entry.card.classList.add("ended");
    entry.state.className = "status " + (e.status || "completed");
    entry.state.textContent = (e.status || "ended") + (e.ended_reason ? " · " + e.ended_reason : "");
    const ended = [...calls.entries()].filter(([, v]) => v.ended);
    for (const [id, v] of ended.slice(0, Math.max(0, ended.length - MAX_ENDED_SHOWN))) {
      v.card.remove();
      calls.delete(id);
    }
    refreshEmpty();
  }

  function parse(event) {
    try { return JSON.parse(event.data); } catch (_) { return null; }
  }

  function on(source, name, handler) {
    source.addEventListener(name, (event) => {
      const data = parse(event);
      if (data) handler(data);
    });
  }

  const source = new EventSource(streamUrl, { withCredentials: true });
  source.onopen = () => setStatus("connected", "connected");
  source.onerror = () => setStatus(
    source.readyState === EventSource.CLOSED ? "disconnected" : "reconnecting…", "disconnected");
  on(source, "snapshot", (s) => {
    for (const [id, v] of calls) { if (!v.ended) { v.card.remove(); calls.delete(id); } }
    for (const c of s.calls || []) addCall(c);
    refreshEmpty();
  });
  on(source, "call_started", addCall);
  on(source, "transcript", onTranscript);
  on(source, "turn", onTurn);
  on(source, "barge_in", (b) => line(entryFor(b.call_id), "event", b.at_ms, "✂ caller barged in"));
  on(source, "backchannel", (b) =>
    line(entryFor(b.call_id), "event", b.at_ms, "backchannel: “" + b.text + "”"));
  on(source, "call_ended", onEnded);
  on(source, "lagged", (l) =>
    setStatus(`connected, but ${l.missed} events were dropped (this view fell behind)`, "lagged"));
})();
