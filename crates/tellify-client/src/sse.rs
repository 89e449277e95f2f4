//! A `text/event-stream` reader for `GET /api/v1/stream`, fed the body's chunks as they
//! arrive: `tellify tail` and the load generator both follow the stream through it.
//!
//! It follows the WHATWG rules as far as tellify's stream uses them: `field: value` lines
//! (one space after the colon dropped), `\n` or `\r\n` line ends, `:` comments (the
//! server's keep-alives), several `data:` lines joined with `\n`, and a blank line that
//! ends an item; an item without data is dropped. A line or an item may be split across
//! chunks anywhere, even inside a UTF-8 character, since bytes are only decoded a whole
//! line at a time. The last `id:` seen is kept so a reconnecting reader can send it back
//! as `Last-Event-ID` and miss nothing.

/// One server-sent event: its `event:` name (`message` if none) and its `data:` lines.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SseItem {
    pub event: String,
    pub data: String,
}

/// Splits a `text/event-stream` body into [`SseItem`]s as bytes arrive.
#[derive(Debug, Default)]
pub struct SseParser {
    /// Bytes of a line not yet ended.
    pending: Vec<u8>,
    /// The last `id:` seen.
    last_id: Option<String>,
    event: String,
    data: Vec<String>,
}

impl SseParser {
    /// A parser for a stream re-opened after `last_id` (`None` for a first connection),
    /// so [`SseParser::last_id`] keeps answering it until the server sends a newer id.
    pub fn resuming_after(last_id: Option<String>) -> SseParser {
        SseParser {
            last_id,
            ..SseParser::default()
        }
    }

    /// The last `id:` seen (or the one resumed after): the `Last-Event-ID` for a reconnect.
    pub fn last_id(&self) -> Option<&str> {
        self.last_id.as_deref()
    }

    /// Takes the next chunk of the body; returns the items it completed, in order.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<SseItem> {
        let mut items = Vec::new();
        let mut rest = chunk;
        while let Some(end) = rest.iter().position(|byte| *byte == b'\n') {
            self.pending.extend_from_slice(&rest[..end]);
            rest = &rest[end + 1..];
            let mut line = std::mem::take(&mut self.pending);
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            if let Some(item) = self.line(&String::from_utf8_lossy(&line)) {
                items.push(item);
            }
        }
        self.pending.extend_from_slice(rest);
        items
    }

    fn line(&mut self, line: &str) -> Option<SseItem> {
        if line.is_empty() {
            let event = std::mem::take(&mut self.event);
            let data = std::mem::take(&mut self.data);
            if data.is_empty() {
                return None;
            }
            let event = if event.is_empty() {
                "message".to_string()
            } else {
                event
            };
            return Some(SseItem {
                event,
                data: data.join("\n"),
            });
        }
        if line.starts_with(':') {
            return None;
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "event" => self.event = value.to_string(),
            "data" => self.data.push(value.to_string()),
            "id" => self.last_id = Some(value.to_string()),
            _ => {}
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(event: &str, data: &str) -> SseItem {
        SseItem {
            event: event.to_string(),
            data: data.to_string(),
        }
    }

    #[test]
    fn items_end_at_blank_lines_even_across_chunks() {
        let mut parser = SseParser::default();
        assert!(parser.push(b"event: ready\ndata: {}\n").is_empty());
        let items = parser.push(b"\n: keep-alive\n\nevent: event\r\nid: 7\r\ndata: {\"a\":");
        assert_eq!(items, vec![item("ready", "{}")]);
        assert_eq!(
            parser.last_id(),
            Some("7"),
            "the id is kept for Last-Event-ID"
        );
        let items = parser.push(b"1}\r\ndata:2\r\n\r\ndata: plain\n\n");
        assert_eq!(
            items,
            vec![item("event", "{\"a\":1}\n2"), item("message", "plain")]
        );
    }

    #[test]
    fn a_line_end_split_between_cr_and_lf_ends_the_item_once() {
        let mut parser = SseParser::default();
        assert!(parser.push(b"event: alert\r\ndata: {\"a\"").is_empty());
        assert!(parser.push(b":1}\r").is_empty());
        assert!(parser.push(b"\n\r").is_empty());
        assert_eq!(parser.push(b"\n"), vec![item("alert", "{\"a\":1}")]);
    }

    #[test]
    fn a_character_split_across_chunks_is_decoded_whole() {
        let mut parser = SseParser::default();
        let text = "data: grüße\n\n".as_bytes();
        let (first, second) = text.split_at(9); // inside the two bytes of `ü`
        assert!(parser.push(first).is_empty());
        assert_eq!(parser.push(second), vec![item("message", "grüße")]);
    }

    #[test]
    fn items_without_data_and_unknown_fields_are_dropped() {
        let mut parser = SseParser::default();
        let items = parser.push(b"event: ping\n\nretry: 10\nevent: alert\ndata\n\n");
        assert_eq!(
            items,
            vec![item("alert", "")],
            "a bare `data` is an empty line"
        );
    }

    #[test]
    fn a_resumed_parser_answers_the_old_id_until_a_new_one_arrives() {
        let mut parser = SseParser::resuming_after(Some("41".to_string()));
        assert_eq!(parser.last_id(), Some("41"));
        parser.push(b"data: x\n\n");
        assert_eq!(parser.last_id(), Some("41"));
        parser.push(b"id: 42\ndata: y\n\n");
        assert_eq!(parser.last_id(), Some("42"));
    }
}
