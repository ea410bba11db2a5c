//! The texts to scan in an LLM API request or response body, each with the engine [`Source`] that wrote
//! it and a JSON pointer to where it sits, so detection offsets and masks can be placed. Pure.
//!
//! Rather than pick known fields and risk dropping text, every string in the body is scanned; the API
//! shape only decides who wrote it. A message's `role` (OpenAI chat, Anthropic Messages, Ollama chat)
//! sets the source of everything inside it, Anthropic's top-level `system` is `system`, tool results are
//! `tool`, and the rest of a request is `user` (legacy and Ollama `prompt`) while the rest of a response
//! is `assistant` (OpenAI `choices`, Anthropic `content`, Ollama `response`/`message`). In a recognised
//! shape, structural strings (`model`, `role`, `type`, ids, finish reasons) and inline base64 media are
//! skipped. A body of unknown shape keeps every string, with source `unknown`.

use std::fmt::Write as _;

use serde_json::Value;

use crate::engine::Source;

/// Nesting deeper than this is not walked (and the extraction is marked truncated).
pub const MAX_DEPTH: usize = 32;
/// Total string bytes taken from one body; more than any line the scanner accepts.
pub const MAX_TEXT_BYTES: usize = 8 << 20;

/// Strings that describe a body rather than carry its content, skipped in recognised shapes.
const STRUCTURAL_KEYS: &[&str] = &[
    "model",
    "role",
    "type",
    "id",
    "object",
    "finish_reason",
    "stop_reason",
    "stop_sequence",
    "tool_call_id",
    "tool_use_id",
    "system_fingerprint",
    "created_at",
    "done_reason",
    "media_type",
    "service_tier",
    "response_format",
];

/// One string of the body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Text {
    pub text: String,
    pub source: Source,
    /// RFC 6901 pointer to the string in the body, e.g. `/messages/2/content`.
    pub pointer: String,
}

/// Everything to scan in one body.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Extracted {
    pub texts: Vec<Text>,
    /// The body was nested deeper than [`MAX_DEPTH`] or held more than [`MAX_TEXT_BYTES`] of text.
    pub truncated: bool,
}

/// Texts of a request body.
pub fn request_texts(body: &Value) -> Extracted {
    let known = ["messages", "prompt", "system", "input"]
        .iter()
        .any(|k| body.get(k).is_some());
    walk_body(body, known, if known { Source::User } else { Source::Unknown })
}

/// Texts of a response body.
pub fn response_texts(body: &Value) -> Extracted {
    let known = ["choices", "content", "response", "message", "output"]
        .iter()
        .any(|k| body.get(k).is_some());
    walk_body(
        body,
        known,
        if known { Source::Assistant } else { Source::Unknown },
    )
}

fn walk_body(body: &Value, known: bool, source: Source) -> Extracted {
    let mut walker = Walker {
        known,
        out: Extracted::default(),
        bytes: 0,
    };
    let mut pointer = String::new();
    walker.walk(body, &mut pointer, source, 0);
    walker.out
}

/// Appends `/` and `key` as a JSON pointer token (`~` as `~0`, `/` as `~1`), copying it as it is when it
/// holds neither, as object keys nearly always do.
fn push_token(pointer: &mut String, key: &str) {
    pointer.push('/');
    if !key.bytes().any(|b| b == b'~' || b == b'/') {
        pointer.push_str(key);
        return;
    }
    for c in key.chars() {
        match c {
            '~' => pointer.push_str("~0"),
            '/' => pointer.push_str("~1"),
            c => pointer.push(c),
        }
    }
}

fn role_source(role: &str) -> Source {
    match role {
        "system" | "developer" => Source::System,
        "user" => Source::User,
        "assistant" | "model" => Source::Assistant,
        "tool" | "function" | "ipython" => Source::Tool,
        _ => Source::Unknown,
    }
}

struct Walker {
    known: bool,
    out: Extracted,
    bytes: usize,
}

impl Walker {
    fn walk(&mut self, value: &Value, pointer: &mut String, source: Source, depth: usize) {
        if depth > MAX_DEPTH {
            self.out.truncated = true;
            return;
        }
        match value {
            Value::String(s) => self.push(s, pointer, source),
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    let len = pointer.len();
                    pointer.push('/');
                    let _ = write!(pointer, "{i}");
                    self.walk(item, pointer, source, depth + 1);
                    pointer.truncate(len);
                }
            }
            Value::Object(map) => {
                let kind = map.get("type").and_then(Value::as_str);
                if self.known && kind == Some("base64") {
                    return;
                }
                let mut source = source;
                if self.known {
                    if let Some(role) = map.get("role").and_then(Value::as_str) {
                        source = role_source(role);
                    }
                    if kind == Some("tool_result") || kind == Some("function_call_output") {
                        source = Source::Tool;
                    }
                }
                for (key, item) in map {
                    if self.known && item.is_string() && STRUCTURAL_KEYS.contains(&key.as_str()) {
                        continue;
                    }
                    let child_source =
                        if self.known && depth == 0 && (key == "system" || key == "instructions") {
                            Source::System
                        } else {
                            source
                        };
                    let len = pointer.len();
                    push_token(pointer, key);
                    self.walk(item, pointer, child_source, depth + 1);
                    pointer.truncate(len);
                }
            }
            Value::Null | Value::Bool(_) | Value::Number(_) => {}
        }
    }

    fn push(&mut self, s: &str, pointer: &str, source: Source) {
        if s.is_empty() || (self.known && s.starts_with("data:") && s.contains(";base64,")) {
            return;
        }
        if self.bytes + s.len() > MAX_TEXT_BYTES {
            self.out.truncated = true;
            return;
        }
        self.bytes += s.len();
        self.out.texts.push(Text {
            text: s.to_string(),
            source,
            pointer: pointer.to_string(),
        });
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pairs(e: &Extracted) -> Vec<(&str, Source, &str)> {
        e.texts
            .iter()
            .map(|t| (t.text.as_str(), t.source, t.pointer.as_str()))
            .collect()
    }

    #[test]
    fn openai_chat_request_tags_each_message_by_role() {
        let body = json!({
            "model": "gpt-4o",
            "messages": [
                {"role": "system", "content": "be helpful"},
                {"role": "user", "content": [{"type": "text", "text": "hi"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]},
                {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function",
                    "function": {"name": "search", "arguments": "{\"q\":\"x\"}"}}]},
                {"role": "tool", "tool_call_id": "c1", "content": "tool says hi"}
            ]
        });
        let e = request_texts(&body);
        assert_eq!(
            pairs(&e),
            [
                ("be helpful", Source::System, "/messages/0/content"),
                ("hi", Source::User, "/messages/1/content/0/text"),
                (
                    "{\"q\":\"x\"}",
                    Source::Assistant,
                    "/messages/2/tool_calls/0/function/arguments"
                ),
                (
                    "search",
                    Source::Assistant,
                    "/messages/2/tool_calls/0/function/name"
                ),
                ("tool says hi", Source::Tool, "/messages/3/content"),
            ]
        );
        assert!(!e.truncated);
    }

    #[test]
    fn legacy_completion_prompt_as_string_or_array() {
        let e = request_texts(&json!({"model": "davinci", "prompt": "one"}));
        assert_eq!(pairs(&e), [("one", Source::User, "/prompt")]);
        let e = request_texts(&json!({"prompt": ["a", "b"]}));
        assert_eq!(
            pairs(&e),
            [("a", Source::User, "/prompt/0"), ("b", Source::User, "/prompt/1")]
        );
    }

    #[test]
    fn anthropic_messages_request_with_system_and_tool_result() {
        let body = json!({
            "model": "claude",
            "system": [{"type": "text", "text": "sys"}],
            "messages": [
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "t1", "content": [{"type": "text", "text": "doc"}]},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "QUFB"}}
                ]}
            ]
        });
        let e = request_texts(&body);
        assert_eq!(
            pairs(&e),
            [
                ("doc", Source::Tool, "/messages/0/content/0/content/0/text"),
                ("sys", Source::System, "/system/0/text"),
            ]
        );
    }

    #[test]
    fn ollama_generate_and_chat_requests() {
        let e = request_texts(&json!({"model": "llama3", "prompt": "p", "system": "s"}));
        assert_eq!(
            pairs(&e),
            [("p", Source::User, "/prompt"), ("s", Source::System, "/system")]
        );
        let e = request_texts(&json!({"model": "llama3", "messages": [{"role": "user", "content": "c"}]}));
        assert_eq!(pairs(&e), [("c", Source::User, "/messages/0/content")]);
    }

    #[test]
    fn response_shapes() {
        let openai = json!({"id": "x", "object": "chat.completion", "choices": [
            {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "answer"}}]});
        assert_eq!(
            pairs(&response_texts(&openai)),
            [("answer", Source::Assistant, "/choices/0/message/content")]
        );
        let legacy = json!({"choices": [{"text": "t"}]});
        assert_eq!(
            pairs(&response_texts(&legacy)),
            [("t", Source::Assistant, "/choices/0/text")]
        );
        let anthropic = json!({"type": "message", "role": "assistant", "stop_reason": "end_turn",
            "content": [{"type": "text", "text": "a"}]});
        assert_eq!(
            pairs(&response_texts(&anthropic)),
            [("a", Source::Assistant, "/content/0/text")]
        );
        let ollama = json!({"model": "llama3", "response": "r", "done": true});
        assert_eq!(
            pairs(&response_texts(&ollama)),
            [("r", Source::Assistant, "/response")]
        );
        let ollama_chat = json!({"model": "llama3", "message": {"role": "assistant", "content": "m"}});
        assert_eq!(
            pairs(&response_texts(&ollama_chat)),
            [("m", Source::Assistant, "/message/content")]
        );
    }

    #[test]
    fn unknown_shapes_keep_every_string() {
        let body = json!({"model": "m", "weird": {"a/b": ["x", 1, {"type": "y"}]}});
        let e = request_texts(&body);
        assert_eq!(
            pairs(&e),
            [
                ("m", Source::Unknown, "/model"),
                ("x", Source::Unknown, "/weird/a~1b/0"),
                ("y", Source::Unknown, "/weird/a~1b/2/type"),
            ]
        );
    }

    #[test]
    fn deep_nesting_is_bounded_and_flagged() {
        let mut body = json!("deep");
        for _ in 0..(MAX_DEPTH + 5) {
            body = json!([body]);
        }
        let e = request_texts(&json!({"x": "shallow", "y": body}));
        assert!(e.truncated);
        assert_eq!(pairs(&e), [("shallow", Source::Unknown, "/x")]);
    }

    #[test]
    fn pointers_resolve_back_to_the_strings() {
        let body = json!({"messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
            "x~y": "z", "a/b~/c": ["w", {"é/~1": "v"}]});
        let texts = request_texts(&body).texts;
        let pointers: Vec<&str> = texts.iter().map(|t| t.pointer.as_str()).collect();
        assert!(pointers.contains(&"/a~1b~0~1c/1/é~1~01"), "{pointers:?}");
        for t in texts {
            assert_eq!(
                body.pointer(&t.pointer).and_then(Value::as_str),
                Some(t.text.as_str())
            );
        }
    }
}
