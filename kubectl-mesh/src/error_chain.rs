//! An error with its causes, as the user reads it: the message, then each cause it does not
//! already spell out.

use std::error::Error;

/// `e`'s message, then one `caused by:` line for each source whose text the lines before do not
/// already contain (wrappers that print their cause are not repeated). A refused connection
/// reads "cannot reach the Kubernetes API ... caused by: tcp connect error ... caused by:
/// Connection refused (os error 111)".
pub fn error_chain(e: &dyn Error) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        let text = cause.to_string();
        if !text.is_empty() && !out.contains(&text) {
            out.push_str("\n  caused by: ");
            out.push_str(&text);
        }
        next = cause.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    enum Outer {
        #[error("cannot reach the API")]
        Plain(#[source] std::io::Error),
        #[error("wrapped: {0}")]
        Spelled(#[source] std::io::Error),
    }

    #[test]
    fn causes_are_listed_once() {
        let io =
            || std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "Connection refused");
        assert_eq!(
            error_chain(&Outer::Plain(io())),
            "cannot reach the API\n  caused by: Connection refused"
        );
        assert_eq!(
            error_chain(&Outer::Spelled(io())),
            "wrapped: Connection refused"
        );
    }
}
