//! `--selector` and `--by`: label matchers and label names, parsed here and re-rendered by
//! certgate. A selector can only narrow the fixed queries, never change them: it is a list of
//! label matchers (`{namespace="shop", workload=~"web|api"}`) and nothing else.

use std::fmt::Write as _;

/// The label that is not a target label: a matcher on it narrows the certgate series but is
/// left out of the `up` query (targets have no `set`).
pub const SET_LABEL: &str = "set";

/// How a matcher compares: the four PromQL matchers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchOp {
    /// `=`
    Equal,
    /// `!=`
    NotEqual,
    /// `=~`
    Regex,
    /// `!~`
    NotRegex,
}

impl MatchOp {
    /// The PromQL operator.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Equal => "=",
            Self::NotEqual => "!=",
            Self::Regex => "=~",
            Self::NotRegex => "!~",
        }
    }
}

/// One label matcher: `name op "value"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matcher {
    /// The label name (validated).
    pub name: String,
    /// The comparison.
    pub op: MatchOp,
    /// The value, unescaped.
    pub value: String,
}

impl Matcher {
    /// A matcher certgate itself adds (its names and values are known good).
    pub fn new(name: &str, op: MatchOp, value: &str) -> Self {
        Self {
            name: name.to_string(),
            op,
            value: value.to_string(),
        }
    }

    fn render(&self, out: &mut String) {
        out.push_str(&self.name);
        out.push_str(self.op.as_str());
        out.push('"');
        for c in self.value.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c => out.push(c),
            }
        }
        out.push('"');
    }
}

/// A validated `--selector`: label matchers only.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector {
    matchers: Vec<Matcher>,
}

/// The one-line hint every selector error ends with.
const SELECTOR_USAGE: &str =
    "expected label matchers such as '{namespace=\"shop\", workload=~\"web|api\"}'";

impl Selector {
    /// Parses `{a="b", c=~"d", e!="f", g!~"h"}` (values in `"…"`, `'…'` or `` `…` ``, a
    /// trailing comma allowed); an empty string is the empty selector. Anything else, a metric
    /// name or a `__name__` matcher included, is refused with a one-line reason.
    pub fn parse(input: &str) -> Result<Self, String> {
        let s = input.trim();
        if s.is_empty() {
            return Ok(Self::default());
        }
        let err = |why: &str| format!("--selector {input:?}: {why}; {SELECTOR_USAGE}");
        let Some(inner) = s.strip_prefix('{') else {
            return Err(err(
                "must start with '{' (label matchers only, no metric name)",
            ));
        };
        let mut p = Parser {
            chars: inner.char_indices().peekable(),
            text: inner,
        };
        let mut matchers = Vec::new();
        loop {
            p.skip_space();
            match p.peek() {
                Some('}') => {
                    p.next();
                    break;
                }
                None => return Err(err("missing '}'")),
                _ => {}
            }
            let name = p.label_name().map_err(|e| err(&e))?;
            if name.starts_with("__") {
                return Err(err(&format!(
                    "{name}: labels starting with __ cannot be matched (the queries name their metrics)"
                )));
            }
            p.skip_space();
            let op = p.op().map_err(|e| err(&e))?;
            p.skip_space();
            let value = p.string().map_err(|e| err(&e))?;
            matchers.push(Matcher { name, op, value });
            p.skip_space();
            match p.next() {
                Some(',') => {}
                Some('}') => break,
                Some(c) => return Err(err(&format!("unexpected {c:?} after a matcher"))),
                None => return Err(err("missing '}'")),
            }
        }
        p.skip_space();
        if let Some((at, _)) = p.chars.peek() {
            return Err(err(&format!(
                "unexpected {:?} after '}}'",
                p.text.get(*at..).unwrap_or_default()
            )));
        }
        Ok(Self { matchers })
    }

    /// Whether a matcher names `label`.
    pub fn matches_label(&self, label: &str) -> bool {
        self.matchers.iter().any(|m| m.name == label)
    }

    /// `metric{first…, selector…}` as PromQL; with `targets_only`, matchers on
    /// [`SET_LABEL`] are left out (for `up`, whose series have no `set`).
    pub fn render(&self, metric: &str, first: &[Matcher], targets_only: bool) -> String {
        let mut out = String::with_capacity(64);
        out.push_str(metric);
        out.push('{');
        let mine = self
            .matchers
            .iter()
            .filter(|m| !(targets_only && m.name == SET_LABEL));
        for (i, m) in first.iter().chain(mine).enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            m.render(&mut out);
        }
        out.push('}');
        out
    }
}

impl std::fmt::Display for Selector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut out = String::from("{");
        for (i, m) in self.matchers.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            m.render(&mut out);
        }
        out.push('}');
        f.write_str(&out)
    }
}

/// Validates `--by`: label names, at least one, none twice.
pub fn parse_by(names: &[String]) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::with_capacity(names.len());
    for raw in names {
        let name = raw.trim();
        if !is_label_name(name) {
            return Err(format!(
                "--by {raw:?}: not a label name (letters, digits and _, not starting with a digit)"
            ));
        }
        if out.iter().any(|n| n == name) {
            return Err(format!("--by: {name} given twice"));
        }
        out.push(name.to_string());
    }
    if out.is_empty() {
        return Err("--by: give at least one label name (e.g. namespace,workload,set)".into());
    }
    Ok(out)
}

/// Whether `s` is a Prometheus label name: `[a-zA-Z_][a-zA-Z0-9_]*`.
pub fn is_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

// === impl Parser ===

struct Parser<'a> {
    chars: std::iter::Peekable<std::str::CharIndices<'a>>,
    text: &'a str,
}

impl Parser<'_> {
    fn peek(&mut self) -> Option<char> {
        self.chars.peek().map(|(_, c)| *c)
    }

    fn next(&mut self) -> Option<char> {
        self.chars.next().map(|(_, c)| c)
    }

    fn skip_space(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.next();
        }
    }

    fn label_name(&mut self) -> Result<String, String> {
        let mut name = String::new();
        while let Some(c) = self.peek() {
            if c.is_ascii_alphanumeric() || c == '_' {
                name.push(c);
                self.next();
            } else {
                break;
            }
        }
        if is_label_name(&name) {
            Ok(name)
        } else if name.is_empty() {
            Err(match self.peek() {
                Some(c) => format!("expected a label name, found {c:?}"),
                None => "expected a label name".into(),
            })
        } else {
            Err(format!("{name:?} is not a label name"))
        }
    }

    fn op(&mut self) -> Result<MatchOp, String> {
        let op = match (self.next(), self.peek()) {
            (Some('='), Some('~')) => MatchOp::Regex,
            (Some('='), _) => return Ok(MatchOp::Equal),
            (Some('!'), Some('=')) => MatchOp::NotEqual,
            (Some('!'), Some('~')) => MatchOp::NotRegex,
            _ => return Err("expected =, !=, =~ or !~ after a label name".into()),
        };
        self.next();
        Ok(op)
    }

    fn string(&mut self) -> Result<String, String> {
        let quote = match self.next() {
            Some(q @ ('"' | '\'' | '`')) => q,
            _ => return Err("expected a quoted value".into()),
        };
        let mut value = String::new();
        loop {
            match self.next() {
                None => return Err("unterminated quoted value".into()),
                Some(c) if c == quote => return Ok(value),
                Some('\\') if quote != '`' => match self.next() {
                    Some('\\') => value.push('\\'),
                    Some('"') => value.push('"'),
                    Some('\'') => value.push('\''),
                    Some('n') => value.push('\n'),
                    Some('r') => value.push('\r'),
                    Some('t') => value.push('\t'),
                    Some(c) => {
                        return Err(format!(
                            "unsupported escape \\{c} (use \\\\ \\\" \\' \\n \\r \\t)"
                        ))
                    }
                    None => return Err("unterminated quoted value".into()),
                },
                Some(c) if c.is_control() && !matches!(c, '\t') => {
                    return Err(format!(
                        "control character {c:?} in a value (write it as an escape)"
                    ))
                }
                Some(c) => value.push(c),
            }
        }
    }
}

/// Percent-encodes a form value (`application/x-www-form-urlencoded`, RFC 3986 unreserved
/// characters pass through).
pub fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_matchers_parse_and_render_canonically() {
        let s = Selector::parse(
            r#" { namespace="shop", workload =~ 'web|api' , set!=`x\y`, pod!~"a\"b", } "#,
        )
        .unwrap();
        assert_eq!(
            s.render(
                "up",
                &[Matcher::new("job", MatchOp::Regex, ".*certgate.*")],
                false
            ),
            r#"up{job=~".*certgate.*", namespace="shop", workload=~"web|api", set!="x\\y", pod!~"a\"b"}"#
        );
        // `up` has no `set` label: matchers on it stay out of the target query.
        assert_eq!(
            s.render("up", &[], true),
            r#"up{namespace="shop", workload=~"web|api", pod!~"a\"b"}"#
        );
        assert_eq!(Selector::parse("").unwrap().render("m", &[], false), "m{}");
        assert_eq!(Selector::parse("{}").unwrap(), Selector::default());
        assert!(s.matches_label("set"));
    }

    #[test]
    fn anything_but_label_matchers_is_refused_in_one_line() {
        for bad in [
            "up",
            r#"up{a="b"}"#,
            r#"{a="b"} or vector(1)"#,
            r#"{a=b}"#,
            r#"{a="b""#,
            r#"{a="b" c="d"}"#,
            r#"{1a="b"}"#,
            r#"{__name__="up"}"#,
            r#"{a=="b"}"#,
            r#"{a<"b"}"#,
            r#"{a="\q"}"#,
            "{a=\"b\nc\"}",
            r#"{a="b"}}"#,
            "{",
            r#"{,}"#,
        ] {
            let e = Selector::parse(bad).unwrap_err();
            assert!(e.starts_with("--selector "), "{bad}: {e}");
            assert!(!e.contains('\n') || bad.contains('\n'), "{bad}: {e}");
        }
    }

    #[test]
    fn by_takes_label_names_once() {
        let v = |s: &[&str]| s.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            parse_by(&v(&["namespace", " set"])).unwrap(),
            v(&["namespace", "set"])
        );
        assert!(parse_by(&v(&[])).is_err());
        assert!(parse_by(&v(&["a-b"])).is_err());
        assert!(parse_by(&v(&["a", "a"])).is_err());
    }

    #[test]
    fn form_values_are_percent_encoded() {
        assert_eq!(form_encode(r#"up{a="b c"}"#), "up%7Ba%3D%22b%20c%22%7D");
    }
}
