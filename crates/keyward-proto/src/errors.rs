//! Answers written before any handler runs, as whole HTTP/1.1 messages.

/// The answer to a connection over its address's cap, written once without
/// waiting, before the connection is closed (by the API listener and the
/// gateway alike).
pub const TOO_MANY_CONNECTIONS: &[u8] = b"HTTP/1.1 429 Too Many Requests\r\n\
    content-type: application/json\r\ncontent-length: 92\r\nconnection: close\r\n\r\n\
    {\"error\":{\"code\":\"TOO_MANY_CONNECTIONS\",\"message\":\"too many connections from this address\"}}";

#[cfg(test)]
mod tests {
    #[test]
    fn the_connection_refusal_says_its_length() {
        let text = std::str::from_utf8(super::TOO_MANY_CONNECTIONS).unwrap_or_default();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or_default();
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let body: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
        assert_eq!(body["error"]["code"], "TOO_MANY_CONNECTIONS");
    }
}
