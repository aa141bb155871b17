//! A minimum rate for request bodies: a body that trickles in slower than
//! the configured rate is cut with [`BodyTooSlow`], so a client cannot hold
//! a request (and the memory buffered for it) open by sending a byte now
//! and then.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

/// Errors of the bodies this module wraps.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The request body arrived slower than the configured minimum rate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the request body arrived slower than {min_bytes} bytes per {window:?}")]
pub struct BodyTooSlow {
    /// Bytes that had to arrive in each window.
    pub min_bytes: u64,
    /// The window.
    pub window: Duration,
}

/// Whether `error` or one of its sources is [`BodyTooSlow`] (handlers see
/// it wrapped by axum and `http-body-util`).
pub fn is_body_too_slow(error: &(dyn std::error::Error + 'static)) -> bool {
    crate::error_chain::find_cause::<BodyTooSlow>(error).is_some()
}

/// The minimum rate: `min_bytes` in every `window`.
#[derive(Clone, Copy, Debug)]
pub struct MinRate {
    min_bytes: u64,
    window: Duration,
}

impl MinRate {
    /// `bytes_per_sec` averaged over `window`; `None` when the rate is 0
    /// (check off).
    pub fn new(bytes_per_sec: u64, window: Duration) -> Option<Self> {
        (bytes_per_sec > 0).then(|| Self {
            min_bytes: bytes_per_sec.saturating_mul(window.as_secs().max(1)),
            window,
        })
    }

    fn error(&self) -> BodyTooSlow {
        BodyTooSlow {
            min_bytes: self.min_bytes,
            window: self.window,
        }
    }
}

/// A body that fails with [`BodyTooSlow`] when fewer than `min_bytes`
/// arrive within a window. A window starts when the reader first asks for
/// data and again each time the window's quota is met; a reader that polls
/// late therefore never counts against the client.
pub struct MinRateBody<B> {
    inner: B,
    rate: Option<MinRate>,
    window_start: Option<Instant>,
    window_bytes: u64,
    timer: Option<Pin<Box<Sleep>>>,
}

impl<B> MinRateBody<B> {
    /// Wraps `inner`; `rate: None` passes it through unchanged.
    pub fn new(inner: B, rate: Option<MinRate>) -> Self {
        Self {
            inner,
            rate,
            window_start: None,
            window_bytes: 0,
            timer: None,
        }
    }
}

impl<B> Body for MinRateBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let Some(rate) = this.rate else {
            return Pin::new(&mut this.inner).poll_frame(cx).map_err(Into::into);
        };
        let start = *this.window_start.get_or_insert_with(Instant::now);
        let deadline = start + rate.window;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.window_bytes = this.window_bytes.saturating_add(data.len() as u64);
                }
                if this.window_bytes >= rate.min_bytes {
                    // Quota met: the next window starts now.
                    this.window_start = Some(Instant::now());
                    this.window_bytes = 0;
                } else if Instant::now() >= deadline {
                    return Poll::Ready(Some(Err(rate.error().into())));
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(other) => Poll::Ready(other.map(|r| r.map_err(Into::into))),
            Poll::Pending => {
                // Waiting on the client: wake up at the window's end to judge it.
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                if timer.deadline() != deadline {
                    timer.as_mut().reset(deadline);
                }
                ready!(timer.as_mut().poll(cx));
                Poll::Ready(Some(Err(rate.error().into())))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, StreamBody};
    use tokio::sync::mpsc;
    use tokio_stream_shim::ReceiverStream;

    type Feed = mpsc::Sender<Result<Frame<Bytes>, BoxError>>;

    /// A body fed by the test through a channel.
    fn channel_body() -> (Feed, MinRateBody<StreamBody<ReceiverStream>>) {
        let (tx, rx) = mpsc::channel(16);
        let rate = MinRate::new(10, Duration::from_secs(1));
        (
            tx,
            MinRateBody::new(StreamBody::new(ReceiverStream(rx)), rate),
        )
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_body_is_cut_at_the_end_of_the_window() {
        let (tx, mut body) = channel_body();
        tx.send(Ok(Frame::data(Bytes::from_static(b"12345"))))
            .await
            .unwrap();
        let first = body.frame().await.unwrap().unwrap();
        assert_eq!(first.into_data().unwrap().len(), 5);
        let started = Instant::now();
        let err = body.frame().await.unwrap().unwrap_err();
        assert!(is_body_too_slow(&*err), "{err}");
        assert_eq!(started.elapsed(), Duration::from_secs(1));
        drop(tx);
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_keeps_the_rate_is_read_to_its_end() {
        let (tx, mut body) = channel_body();
        tokio::spawn(async move {
            for _ in 0..5 {
                tx.send(Ok(Frame::data(Bytes::from_static(b"0123456789"))))
                    .await
                    .unwrap();
                tokio::time::sleep(Duration::from_millis(900)).await;
            }
        });
        let mut total = 0;
        while let Some(frame) = body.frame().await {
            total += frame.unwrap().into_data().unwrap().len();
        }
        assert_eq!(total, 50);
    }

    #[tokio::test(start_paused = true)]
    async fn a_trickle_below_the_rate_is_cut() {
        let (tx, mut body) = channel_body();
        tokio::spawn(async move {
            // 2 bytes every 300 ms: under 10 bytes per second.
            for _ in 0..20 {
                if tx
                    .send(Ok(Frame::data(Bytes::from_static(b"ab"))))
                    .await
                    .is_err()
                {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        });
        let started = Instant::now();
        let err = loop {
            match body.frame().await {
                Some(Ok(_)) => continue,
                Some(Err(e)) => break e,
                None => panic!("a trickle below the rate was read to its end"),
            }
        };
        assert!(is_body_too_slow(&*err), "{err}");
        assert!(
            started.elapsed() <= Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
    }

    /// The few lines of `tokio-stream`'s `ReceiverStream` these tests need.
    mod tokio_stream_shim {
        use super::*;

        pub struct ReceiverStream(pub mpsc::Receiver<Result<Frame<Bytes>, BoxError>>);

        impl futures::Stream for ReceiverStream {
            type Item = Result<Frame<Bytes>, BoxError>;

            fn poll_next(
                mut self: Pin<&mut Self>,
                cx: &mut Context<'_>,
            ) -> Poll<Option<Self::Item>> {
                self.0.poll_recv(cx)
            }
        }
    }
}
