//! `${VAR}` in Compose values, resolved the way Compose resolves them.
//!
//! Compose reads variables from the shell's environment, then from the `.env` file beside
//! the Compose file; the caller passes that lookup in (this module reads nothing). The
//! forms: `$VAR`, `${VAR}`, `${VAR:-default}` (unset or empty), `${VAR-default}` (unset),
//! `${VAR:?message}` and `${VAR?message}` (an error), `${VAR:+other}`, `${VAR+other}`, and
//! `$$` for a literal `$`. Defaults may hold variables themselves (`${A:-${B}}`).
//!
//! Where Compose would quietly put an empty string for an unset variable without a
//! default, the import keeps `${VAR}` as written and reports it: a silent empty value in a
//! deployment config is worse than a visible placeholder.

/// The result of interpolating one value.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Interpolated {
    pub text: String,
    /// Variables read (set or not), in order of first use.
    pub vars: Vec<String>,
    /// Variables that were unset, had no default, and were kept as written.
    pub unset: Vec<String>,
}

/// `${VAR:?message}` (or `?`) met an unset (or empty) variable: Compose stops there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Required {
    pub var: String,
    pub message: String,
}

/// Interpolates `input` with `lookup` (the environment, then `.env`).
pub fn interpolate(
    input: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Interpolated, Required> {
    let mut out = Interpolated::default();
    let text = expand(input, lookup, &mut out)?;
    out.text = text;
    Ok(out)
}

fn is_name_start(c: char) -> bool {
    c == '_' || c.is_ascii_alphabetic()
}

fn is_name_char(c: char) -> bool {
    c == '_' || c.is_ascii_alphanumeric()
}

fn note_var(out: &mut Interpolated, name: &str) {
    if !out.vars.iter().any(|v| v == name) {
        out.vars.push(name.to_string());
    }
}

fn expand(
    input: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    out: &mut Interpolated,
) -> Result<String, Required> {
    let chars: Vec<char> = input.chars().collect();
    let mut result = String::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c != '$' {
            result.push(c);
            i += 1;
            continue;
        }
        match chars.get(i + 1) {
            Some('$') => {
                result.push('$');
                i += 2;
            }
            Some('{') => {
                // Find the matching `}`, counting nested `${`.
                let mut depth = 1;
                let mut j = i + 2;
                while j < chars.len() {
                    match chars[j] {
                        '$' if chars.get(j + 1) == Some(&'{') => {
                            depth += 1;
                            j += 1;
                        }
                        '}' => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                    j += 1;
                }
                if j >= chars.len() {
                    // No closing brace: not a variable; keep it as written.
                    result.extend(&chars[i..]);
                    break;
                }
                let inner: String = chars[i + 2..j].iter().collect();
                let written: String = chars[i..=j].iter().collect();
                result.push_str(&braced(&inner, &written, lookup, out)?);
                i = j + 1;
            }
            Some(&n) if is_name_start(n) => {
                let mut j = i + 1;
                while j < chars.len() && is_name_char(chars[j]) {
                    j += 1;
                }
                let name: String = chars[i + 1..j].iter().collect();
                note_var(out, &name);
                match lookup(&name) {
                    Some(v) => result.push_str(&v),
                    None => {
                        out.unset.push(name);
                        result.extend(&chars[i..j]);
                    }
                }
                i = j;
            }
            _ => {
                result.push('$');
                i += 1;
            }
        }
    }
    Ok(result)
}

fn braced(
    inner: &str,
    written: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    out: &mut Interpolated,
) -> Result<String, Required> {
    let name_len = inner
        .char_indices()
        .find(|&(_, c)| !is_name_char(c))
        .map_or(inner.len(), |(i, _)| i);
    let (name, rest) = inner.split_at(name_len);
    if name.is_empty() || !name.starts_with(is_name_start) {
        return Ok(written.to_string());
    }
    note_var(out, name);
    let value = lookup(name);
    let empty = value.as_deref().is_none_or(str::is_empty);
    let (op, arg) = ["-", ":-", "?", ":?", "+", ":+"]
        .iter()
        .rev()
        .find_map(|op| rest.strip_prefix(op).map(|arg| (*op, arg)))
        .unwrap_or(("", rest));
    if op.is_empty() && !rest.is_empty() {
        // `${VAR/x/y}` and the like: not Compose syntax; keep it.
        return Ok(written.to_string());
    }
    match op {
        "" => match value {
            Some(v) => Ok(v),
            None => {
                out.unset.push(name.to_string());
                Ok(written.to_string())
            }
        },
        ":-" if empty => expand(arg, lookup, out),
        "-" if value.is_none() => expand(arg, lookup, out),
        ":?" | "?" if (op == ":?" && empty) || value.is_none() => Err(Required {
            var: name.to_string(),
            message: expand(arg, lookup, out)?,
        }),
        ":+" => {
            if empty {
                Ok(String::new())
            } else {
                expand(arg, lookup, out)
            }
        }
        "+" => {
            if value.is_none() {
                Ok(String::new())
            } else {
                expand(arg, lookup, out)
            }
        }
        _ => Ok(value.unwrap_or_default()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "TAG" => Some("3074f46".into()),
            "EMPTY" => Some(String::new()),
            "HOME" => Some("/home/deploy".into()),
            _ => None,
        }
    }

    fn text(s: &str) -> String {
        interpolate(s, &env).unwrap().text
    }

    #[test]
    fn set_variables_are_replaced() {
        assert_eq!(text("app:${TAG}"), "app:3074f46");
        assert_eq!(text("$HOME/env/.env"), "/home/deploy/env/.env");
        assert_eq!(text("${HOME}x"), "/home/deploy".to_string() + "x");
    }

    #[test]
    fn defaults_follow_compose() {
        assert_eq!(text("${NOPE:-d}"), "d");
        assert_eq!(text("${NOPE-d}"), "d");
        assert_eq!(text("${EMPTY:-d}"), "d", ":- also replaces an empty value");
        assert_eq!(text("${EMPTY-d}"), "", "- replaces an unset value only");
        assert_eq!(text("${TAG:-d}"), "3074f46");
        assert_eq!(text("${NOPE:-${TAG}}"), "3074f46", "nested default");
        assert_eq!(text("${TAG:+set}"), "set");
        assert_eq!(text("${NOPE:+set}"), "");
        assert_eq!(text("${EMPTY+set}"), "set");
    }

    #[test]
    fn dollar_dollar_is_a_literal_dollar() {
        assert_eq!(text("echo $$HOME $${TAG}"), "echo $HOME ${TAG}");
        assert_eq!(text("costs 5$"), "costs 5$");
    }

    #[test]
    fn unset_without_default_is_kept_and_reported() {
        let r = interpolate("db:${DB_HOST}:$PORT", &env).unwrap();
        assert_eq!(r.text, "db:${DB_HOST}:$PORT");
        assert_eq!(r.unset, ["DB_HOST", "PORT"]);
        assert_eq!(r.vars, ["DB_HOST", "PORT"]);
    }

    #[test]
    fn required_variables_stop_like_compose() {
        let e = interpolate("${NOPE:?set NOPE first}", &env).unwrap_err();
        assert_eq!(e.var, "NOPE");
        assert_eq!(e.message, "set NOPE first");
        assert!(interpolate("${EMPTY:?x}", &env).is_err());
        assert_eq!(interpolate("${EMPTY?x}", &env).unwrap().text, "");
        assert!(interpolate("${NOPE?x}", &env).is_err());
        assert_eq!(interpolate("${TAG:?x}", &env).unwrap().text, "3074f46");
    }

    /// Every string of up to 5 characters from the syntax's own alphabet: an answer or a
    /// `Required`, never a panic.
    #[test]
    fn no_input_panics() {
        let alphabet = ['$', '{', '}', ':', '-', '?', '+', 'T', 'A', 'G', '_', 'é'];
        let mut stack = vec![String::new()];
        while let Some(s) = stack.pop() {
            let _ = interpolate(&s, &env);
            if s.chars().count() < 5 {
                for c in alphabet {
                    stack.push(format!("{s}{c}"));
                }
            }
        }
    }

    #[test]
    fn odd_input_is_kept() {
        assert_eq!(text("${"), "${");
        assert_eq!(text("${1abc}"), "${1abc}");
        assert_eq!(text("$"), "$");
    }
}
