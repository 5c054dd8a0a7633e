//! Reading the Twilio media socket in rounds instead of per message.
//!
//! Twilio sends a `media` message every 20 ms whether anyone speaks or not, so a call task
//! woken by each arrival wakes 50 times a second for the inbound audio alone, plus its own
//! paced-playout wakes while the bot talks. With rounds on (`twilio.media_read_round_ms`) the
//! socket never wakes the task: it is read, up to what has arrived, whenever the task wakes for
//! anything else (a playout tick, a transcript, reply audio) and at least once every round by
//! a timer of its own. While the bot talks its playout ticks do the reading; in silence the
//! round timer does, with every message it finds (two 20 ms frames for a 40 ms round) read in
//! one go, and their caller audio goes to the STT as one piece. The price is latency: a
//! message waits up to one round before the VAD, the STT and the core see it. Measured at 500
//! recorded calls (docs/PERFORMANCE.md): 17 % fewer syscalls and ~5 % less engine CPU, with no
//! change beyond the run-to-run spread in turn latency or interruption reaction.
//!
//! How it is done: a readiness wake-up of a socket goes to the waker of whoever polled it
//! last and found nothing. The call task polls the socket with a waker that does nothing, so a
//! message's arrival only marks the socket readable, and the next poll (by the round timer or
//! any other wake) reads it. tokio-tungstenite hands a read wake-up to the last writer's waker
//! too, so after a flush the writer's waker is replaced by the same do-nothing one.

use std::future::poll_fn;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use futures::{Sink, Stream, StreamExt as _};

/// How the call task reads its media socket: `None` wakes on every message, `Some(round)`
/// reads in rounds of that length (see the module docs). A round of one frame (20 ms) or
/// less is the same as none.
pub(crate) fn round(media_read_round_ms: u32) -> Option<Duration> {
    (media_read_round_ms > 20).then(|| Duration::from_millis(u64::from(media_read_round_ms)))
}

/// The next message from the media socket; in rounds (`quiet`) an arrival does not wake the
/// task, which must then come back by a timer. Cancel-safe, like `StreamExt::next`.
pub(crate) async fn recv<S: Stream + Unpin>(socket: &mut S, quiet: bool) -> Option<S::Item> {
    if !quiet {
        return socket.next().await;
    }
    poll_fn(|_| ready(socket).map_or(Poll::Pending, Poll::Ready)).await
}

/// The next message if one has arrived, without waiting or leaving a waker: the rest of a
/// round. `Some(None)` is the end of the stream.
pub(crate) fn ready<S: Stream + Unpin>(socket: &mut S) -> Option<Option<S::Item>> {
    match socket.poll_next_unpin(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(item) => Some(item),
        Poll::Pending => None,
    }
}

/// After a completed flush in rounds: leaves a do-nothing waker as the socket's writer, so the
/// next inbound message does not wake the task through it. A flush with nothing to write is
/// ready at once.
pub(crate) fn forget_writer<S: Sink<M> + Unpin, M>(socket: &mut S) {
    let _ = Pin::new(socket).poll_flush(&mut Context::from_waker(Waker::noop()));
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::SinkExt as _;
    use std::future::Future;
    use std::pin::pin;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;
    use tokio::net::{TcpListener, TcpStream};
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::{WebSocketStream, accept_async, client_async};

    #[test]
    fn rounds_are_off_at_a_frame_or_less() {
        assert_eq!(round(0), None);
        assert_eq!(round(20), None);
        assert_eq!(round(40), Some(Duration::from_millis(40)));
    }

    /// Counts its wake-ups: stands for the call task.
    #[derive(Default)]
    struct Wakes(AtomicUsize);
    impl Wake for Wakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    async fn pair() -> (WebSocketStream<TcpStream>, WebSocketStream<TcpStream>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}/", listener.local_addr().unwrap());
        let (client, server) = tokio::join!(
            async {
                let tcp = TcpStream::connect(listener.local_addr().unwrap())
                    .await
                    .unwrap();
                client_async(url, tcp).await.unwrap().0
            },
            async {
                accept_async(listener.accept().await.unwrap().0)
                    .await
                    .unwrap()
            }
        );
        (server, client)
    }

    /// Polls `recv` once as the call task would, with `task` as its waker: nothing to read yet.
    fn expect_nothing(engine: &mut WebSocketStream<TcpStream>, quiet: bool, task: &Arc<Wakes>) {
        let waker = Waker::from(task.clone());
        let mut cx = Context::from_waker(&waker);
        assert!(pin!(recv(engine, quiet)).poll(&mut cx).is_pending());
    }

    /// Polls `recv` as the call task would until a message comes; between polls the test's own
    /// task yields so the runtime can take in the peer's message.
    async fn read_one(
        engine: &mut WebSocketStream<TcpStream>,
        quiet: bool,
        task: &Arc<Wakes>,
    ) -> Message {
        let waker = Waker::from(task.clone());
        loop {
            let mut cx = Context::from_waker(&waker);
            if let Poll::Ready(m) = pin!(recv(engine, quiet)).poll(&mut cx) {
                return m.unwrap().unwrap();
            }
            tokio::task::yield_now().await;
        }
    }

    fn send_and_flush(engine: &mut WebSocketStream<TcpStream>, task: &Arc<Wakes>) {
        let waker = Waker::from(task.clone());
        let mut cx = Context::from_waker(&waker);
        assert!(engine.poll_ready_unpin(&mut cx).is_ready());
        engine.start_send_unpin(Message::text("mark")).unwrap();
        assert!(matches!(
            engine.poll_flush_unpin(&mut cx),
            Poll::Ready(Ok(()))
        ));
    }

    #[tokio::test]
    async fn a_message_wakes_the_task_unless_the_socket_is_read_in_rounds() {
        let (mut engine, mut twilio) = pair().await;
        // Per message: polled once with nothing there, the arrival wakes the task.
        let task = Arc::new(Wakes::default());
        expect_nothing(&mut engine, false, &task);
        twilio.send(Message::text("media 1")).await.unwrap();
        while task.0.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        assert_eq!(
            read_one(&mut engine, false, &task).await,
            Message::text("media 1")
        );

        // In rounds: the message is there at the next poll, and nothing woke the task, even
        // after the task wrote to the socket (the writer's waker forgotten after the flush).
        let task = Arc::new(Wakes::default());
        send_and_flush(&mut engine, &task);
        forget_writer(&mut engine);
        expect_nothing(&mut engine, true, &task);
        twilio.send(Message::text("media 2")).await.unwrap();
        assert_eq!(
            read_one(&mut engine, true, &task).await,
            Message::text("media 2")
        );
        expect_nothing(&mut engine, true, &task);
        twilio.send(Message::text("media 3")).await.unwrap();
        assert_eq!(
            read_one(&mut engine, true, &task).await,
            Message::text("media 3")
        );
        assert_eq!(task.0.load(Ordering::SeqCst), 0, "the socket woke the task");
        assert_eq!(twilio.next().await.unwrap().unwrap(), Message::text("mark"));

        // The rest of a round: what has arrived, then nothing, then the end of the stream.
        expect_nothing(&mut engine, true, &task);
        twilio.send(Message::text("media 4")).await.unwrap();
        twilio.send(Message::text("media 5")).await.unwrap();
        assert_eq!(
            read_one(&mut engine, true, &task).await,
            Message::text("media 4")
        );
        let media_5 = loop {
            if let Some(m) = ready(&mut engine) {
                break m;
            }
            tokio::task::yield_now().await;
        };
        assert_eq!(media_5.unwrap().unwrap(), Message::text("media 5"));
        assert!(ready(&mut engine).is_none(), "nothing more has come");
        twilio.close(None).await.unwrap();
        while !matches!(ready(&mut engine), Some(Some(Ok(Message::Close(_))))) {
            tokio::task::yield_now().await;
        }
        assert_eq!(task.0.load(Ordering::SeqCst), 0, "the socket woke the task");
    }

    #[tokio::test]
    async fn without_forgetting_the_writer_a_read_wakes_the_task_through_it() {
        let (mut engine, mut twilio) = pair().await;
        let task = Arc::new(Wakes::default());
        send_and_flush(&mut engine, &task);
        expect_nothing(&mut engine, true, &task);
        twilio.send(Message::text("media")).await.unwrap();
        assert_eq!(
            read_one(&mut engine, true, &task).await,
            Message::text("media")
        );
        assert_eq!(task.0.load(Ordering::SeqCst), 1);
    }
}
