//! Looking through an error's `source()` chain for a cause of a given type:
//! axum, hyper and `http-body-util` wrap the errors that decide a response
//! (a length limit, a body too slow, an HTTP/2 abuse reset).

use std::error::Error;

/// The first error of type `E` in `error`'s chain, `error` included.
pub fn find_cause<'a, E: Error + 'static>(error: &'a (dyn Error + 'static)) -> Option<&'a E> {
    let mut next = Some(error);
    while let Some(e) = next {
        if let Some(found) = e.downcast_ref::<E>() {
            return Some(found);
        }
        next = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("inner")]
    struct Inner;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] Inner);

    #[test]
    fn finds_a_cause_at_any_depth_and_nothing_else() {
        let e = Outer(Inner);
        assert!(find_cause::<Inner>(&e).is_some());
        assert!(find_cause::<Outer>(&e).is_some());
        assert!(find_cause::<std::io::Error>(&e).is_none());
    }
}
