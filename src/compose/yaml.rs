//! A YAML document as a tree whose every node knows its line and column.
//!
//! `import` must name the source line of everything it maps or leaves out, so the tree is
//! built from the parser's events (saphyr-parser) rather than through serde, which forgets
//! positions. Anchors and aliases are resolved, and so are merge keys (`<<: *defaults`),
//! which Compose files use a lot. Nothing here panics on bad input: every problem is a
//! [`YamlError`] with its line and column.

use std::collections::BTreeMap;

use saphyr_parser::{Event, Parser, ScalarStyle, Span};

/// Nesting deeper than this is refused rather than risking the stack.
const MAX_DEPTH: usize = 200;
/// Nodes a document may expand to, aliases counted at each use: a "billion laughs" file
/// is refused instead of filling the memory.
const MAX_NODES: usize = 1_000_000;

/// A node and where it starts (1-based line and column).
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub value: Value,
    pub line: usize,
    pub col: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Scalar(Scalar),
    Seq(Vec<Node>),
    /// Keys in file order (merge keys resolved).
    Map(Vec<(Node, Node)>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Scalar {
    pub text: String,
    /// A plain (unquoted) scalar: `true`, `10` and `null` are typed only when plain.
    pub plain: bool,
    /// Variables interpolation read to make `text` (filled in by `interpolate`).
    pub vars: Vec<String>,
}

/// A YAML syntax problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YamlError {
    pub line: usize,
    pub col: usize,
    pub message: String,
}

impl Node {
    /// The text of a scalar (numbers and booleans as written), `None` for anything else.
    pub fn str(&self) -> Option<&str> {
        match &self.value {
            Value::Scalar(s) => Some(&s.text),
            _ => None,
        }
    }

    pub fn scalar(&self) -> Option<&Scalar> {
        match &self.value {
            Value::Scalar(s) => Some(s),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self.value, Value::Null)
    }

    pub fn seq(&self) -> Option<&[Node]> {
        match &self.value {
            Value::Seq(items) => Some(items),
            _ => None,
        }
    }

    pub fn map(&self) -> Option<&[(Node, Node)]> {
        match &self.value {
            Value::Map(entries) => Some(entries),
            _ => None,
        }
    }

    /// The value under `key` of a mapping.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.map()?
            .iter()
            .find(|(k, _)| k.str() == Some(key))
            .map(|(_, v)| v)
    }

    /// What kind of node this is, in words, for messages.
    pub fn kind(&self) -> &'static str {
        match self.value {
            Value::Null => "nothing",
            Value::Scalar(_) => "a scalar",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }

    /// A plain `true`/`false` (YAML 1.1 `yes`/`no` too, as Compose's YAML reader does).
    pub fn bool(&self) -> Option<bool> {
        match self.str()?.to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" => Some(true),
            "false" | "no" | "off" => Some(false),
            _ => None,
        }
    }
}

/// Parses the first document of `source`. An empty stream is a document holding `Null`.
pub fn parse(source: &str) -> Result<Node, YamlError> {
    let mut b = Builder {
        events: Parser::new_from_str(source),
        anchors: BTreeMap::new(),
        nodes: 0,
    };
    loop {
        match b.next()? {
            None => {
                return Ok(Node {
                    value: Value::Null,
                    line: 1,
                    col: 1,
                });
            }
            Some((Event::StreamStart | Event::DocumentStart(_) | Event::Nothing, _)) => {}
            Some((Event::StreamEnd, _)) | Some((Event::DocumentEnd, _)) => {
                return Ok(Node {
                    value: Value::Null,
                    line: 1,
                    col: 1,
                });
            }
            Some((event, span)) => return b.node(event, span, 0),
        }
    }
}

struct Builder<'a> {
    events: Parser<'a, saphyr_parser::StrInput<'a>>,
    /// Anchored nodes and how many nodes each holds.
    anchors: BTreeMap<usize, (Node, usize)>,
    /// Nodes made so far, aliases expanded.
    nodes: usize,
}

fn too_large(span: &Span) -> YamlError {
    err(
        span,
        format!(
            "the document expands to more than {MAX_NODES} values (aliases counted at each use)"
        ),
    )
}

fn err(span: &Span, message: impl Into<String>) -> YamlError {
    YamlError {
        line: span.start.line(),
        col: span.start.col() + 1,
        message: message.into(),
    }
}

impl<'a> Builder<'a> {
    fn next(&mut self) -> Result<Option<(Event<'a>, Span)>, YamlError> {
        match self.events.next() {
            None => Ok(None),
            Some(Ok(ev)) => Ok(Some(ev)),
            Some(Err(e)) => Err(YamlError {
                line: e.marker().line(),
                col: e.marker().col() + 1,
                message: e.info().to_string(),
            }),
        }
    }

    fn next_required(&mut self, open: &Span) -> Result<(Event<'a>, Span), YamlError> {
        self.next()?
            .ok_or_else(|| err(open, "this collection is not closed"))
    }

    fn node(&mut self, event: Event<'a>, span: Span, depth: usize) -> Result<Node, YamlError> {
        if depth > MAX_DEPTH {
            return Err(err(&span, format!("nested deeper than {MAX_DEPTH} levels")));
        }
        let (line, col) = (span.start.line(), span.start.col() + 1);
        let first = self.nodes;
        self.nodes += 1;
        if self.nodes > MAX_NODES {
            return Err(too_large(&span));
        }
        let at = |value| Node { value, line, col };
        let (node, anchor) = match event {
            Event::Alias(id) => {
                let (node, size) = self
                    .anchors
                    .get(&id)
                    .cloned()
                    .ok_or_else(|| err(&span, "alias to an unknown anchor"))?;
                self.nodes += size;
                if self.nodes > MAX_NODES {
                    return Err(too_large(&span));
                }
                return Ok(node);
            }
            Event::Scalar(text, style, anchor, _tag) => {
                let plain = style == ScalarStyle::Plain;
                let null = plain && matches!(text.as_ref(), "" | "~" | "null" | "Null" | "NULL");
                let value = if null {
                    Value::Null
                } else {
                    Value::Scalar(Scalar {
                        text: text.into_owned(),
                        plain,
                        vars: Vec::new(),
                    })
                };
                (at(value), anchor)
            }
            Event::SequenceStart(anchor, _tag) => {
                let mut items = Vec::new();
                loop {
                    let (ev, sp) = self.next_required(&span)?;
                    if matches!(ev, Event::SequenceEnd) {
                        break;
                    }
                    items.push(self.node(ev, sp, depth + 1)?);
                }
                (at(Value::Seq(items)), anchor)
            }
            Event::MappingStart(anchor, _tag) => {
                let mut explicit: Vec<(Node, Node)> = Vec::new();
                let mut merged: Vec<(Node, Node)> = Vec::new();
                loop {
                    let (ev, sp) = self.next_required(&span)?;
                    if matches!(ev, Event::MappingEnd) {
                        break;
                    }
                    let key = self.node(ev, sp, depth + 1)?;
                    let (ev, vsp) = self.next_required(&span)?;
                    let value = self.node(ev, vsp, depth + 1)?;
                    let merge = matches!(&key.value, Value::Scalar(s) if s.plain && s.text == "<<");
                    if merge {
                        // `<<: *a` or `<<: [*a, *b]`: earlier maps win, explicit keys win.
                        let sources = match value.value {
                            Value::Map(entries) => vec![entries],
                            Value::Seq(items) => {
                                let mut maps = Vec::new();
                                for item in items {
                                    match item.value {
                                        Value::Map(entries) => maps.push(entries),
                                        _ => {
                                            return Err(err(
                                                &sp,
                                                "a merge key (`<<`) takes a mapping or a list of mappings",
                                            ));
                                        }
                                    }
                                }
                                maps
                            }
                            _ => {
                                return Err(err(
                                    &sp,
                                    "a merge key (`<<`) takes a mapping or a list of mappings",
                                ));
                            }
                        };
                        for entries in sources {
                            for (k, v) in entries {
                                if !merged.iter().any(|(m, _)| same_key(m, &k)) {
                                    merged.push((k, v));
                                }
                            }
                        }
                        continue;
                    }
                    if explicit.iter().any(|(k, _)| same_key(k, &key)) {
                        return Err(YamlError {
                            line: key.line,
                            col: key.col,
                            message: format!(
                                "duplicate key `{}` in a mapping",
                                key.str().unwrap_or("?")
                            ),
                        });
                    }
                    explicit.push((key, value));
                }
                for (k, v) in merged {
                    if !explicit.iter().any(|(e, _)| same_key(e, &k)) {
                        explicit.push((k, v));
                    }
                }
                (at(Value::Map(explicit)), anchor)
            }
            other => return Err(err(&span, format!("unexpected YAML event {other:?}"))),
        };
        if anchor > 0 {
            self.anchors
                .insert(anchor, (node.clone(), self.nodes - first));
        }
        Ok(node)
    }
}

fn same_key(a: &Node, b: &Node) -> bool {
    match (&a.value, &b.value) {
        (Value::Scalar(x), Value::Scalar(y)) => x.text == y.text,
        (x, y) => x == y,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_know_their_line_and_column() {
        let doc = parse("services:\n  web:\n    image: nginx:1.27\n").unwrap();
        let image = doc
            .get("services")
            .unwrap()
            .get("web")
            .unwrap()
            .get("image")
            .unwrap();
        assert_eq!(
            (image.str(), image.line, image.col),
            (Some("nginx:1.27"), 3, 12)
        );
    }

    #[test]
    fn anchors_aliases_and_merge_keys_are_resolved() {
        let src = "x-base: &base\n  restart: always\n  init: true\nservices:\n  a:\n    <<: *base\n    init: false\n    labels: &l {k: v}\n  b:\n    labels: *l\n";
        let doc = parse(src).unwrap();
        let a = doc.get("services").unwrap().get("a").unwrap();
        assert_eq!(a.get("restart").unwrap().str(), Some("always"));
        assert_eq!(
            a.get("init").unwrap().str(),
            Some("false"),
            "explicit keys win"
        );
        let b = doc.get("services").unwrap().get("b").unwrap();
        assert_eq!(b.get("labels").unwrap().get("k").unwrap().str(), Some("v"));
    }

    #[test]
    fn nulls_and_quoted_scalars() {
        let doc = parse("a:\nb: ~\nc: 'null'\nd: \"10\"\ne: 10\n").unwrap();
        assert!(doc.get("a").unwrap().is_null());
        assert!(doc.get("b").unwrap().is_null());
        assert_eq!(doc.get("c").unwrap().str(), Some("null"));
        assert!(!doc.get("d").unwrap().scalar().unwrap().plain);
        assert!(doc.get("e").unwrap().scalar().unwrap().plain);
    }

    #[test]
    fn errors_name_line_and_column() {
        let e = parse("services:\n  web:\n    image: [a, b\n").unwrap_err();
        assert!(e.line >= 3, "{e:?}");
        let e = parse("a: 1\na: 2\n").unwrap_err();
        assert_eq!((e.line, e.col), (2, 1));
        assert!(e.message.contains("duplicate key `a`"));
        let e = parse("a: *nope\n").unwrap_err();
        assert_eq!(e.line, 1, "{e:?}");
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let src = format!("{}{}", "[".repeat(1000), "]".repeat(1000));
        // saphyr refuses it itself, or the builder does: an error either way.
        assert!(parse(&src).is_err());
    }

    #[test]
    fn aliases_that_expand_without_end_are_refused() {
        let mut src = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            src.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n",
                p = i - 1
            ));
        }
        let e = parse(&src).unwrap_err();
        assert!(e.message.contains("expands to more than"), "{e:?}");
    }

    #[test]
    fn an_empty_file_is_null() {
        assert!(parse("").unwrap().is_null());
        assert!(parse("# only a comment\n").unwrap().is_null());
    }
}
