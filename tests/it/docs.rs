//! The README and `docs/` are tested like code, so that they cannot drift from gantry.
//!
//! - Every ```toml block is a configuration gantry accepts: a block with `[project]` goes
//!   through the same parse + validation as `gantry validate`; a fragment without it is
//!   validated inside a minimal `[project]`. A block whose first line is
//!   `# not validated: REASON` is only parsed and its keys checked against the schema.
//! - `docs/configuration.md` documents exactly the keys of `schemas/gantry.schema.json`,
//!   with the same types and the same required keys.
//! - Relative links between the pages point at files, and at headings, that exist.
//!
//! Self-contained on purpose (no shared test support): it reads files and calls the
//! library, it never starts a process.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::Value as Json;

const MARKER: &str = "# not validated:";
const REFERENCE: &str = "docs/configuration.md";
const SCHEMA: &str = "schemas/gantry.schema.json";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &Path) -> String {
    let path = root().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// README.md and every `.md` under docs/, as paths relative to the repository root.
fn pages() -> Vec<PathBuf> {
    fn walk(dir: &Path, rel: &Path, out: &mut Vec<PathBuf>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for path in entries {
            let name = rel.join(path.file_name().unwrap());
            if path.is_dir() {
                walk(&path, &name, out);
            } else if path.extension().is_some_and(|e| e == "md") {
                out.push(name);
            }
        }
    }
    let mut out = vec![PathBuf::from("README.md")];
    walk(&root().join("docs"), Path::new("docs"), &mut out);
    out
}

/// A fenced code block: its info string, its text and the line its body starts on.
struct Block {
    lang: String,
    body: String,
    line: usize,
}

/// The fenced blocks of a page, and its lines outside them (1-based numbers).
fn split_fences(text: &str) -> (Vec<Block>, Vec<(usize, &str)>) {
    let mut blocks = Vec::new();
    let mut prose = Vec::new();
    let mut open: Option<Block> = None;
    for (i, line) in text.lines().enumerate() {
        let fence = line.trim_start().starts_with("```");
        match (&mut open, fence) {
            (None, true) => {
                open = Some(Block {
                    lang: line.trim_start()[3..].trim().to_string(),
                    body: String::new(),
                    line: i + 2,
                });
            }
            (Some(_), true) => blocks.push(open.take().unwrap()),
            (Some(b), false) => {
                b.body.push_str(line);
                b.body.push('\n');
            }
            (None, false) => prose.push((i + 1, line)),
        }
    }
    assert!(open.is_none(), "a code fence is never closed");
    (blocks, prose)
}

/// Docs name env files that do not exist here; validation only needs their variable names.
struct DocFiles;

impl gantry::model::FileFacts for DocFiles {
    fn env_file(&self, _path: &str) -> Result<gantry::model::EnvFileFacts, String> {
        Ok(gantry::model::EnvFileFacts {
            keys: vec!["FROM_ENV_FILE".into()],
            sha256: "0".repeat(64),
        })
    }
}

fn schema() -> Json {
    serde_json::from_str(&read(Path::new(SCHEMA))).expect("the schema is JSON")
}

/// Follows `$ref`s, and `allOf`/`anyOf`/`oneOf` wrappers of a single non-null schema (how
/// schemars writes `Option<T>` and documented references), to the schema that says what a
/// value is.
fn resolve<'a>(schema: &'a Json, mut node: &'a Json) -> &'a Json {
    for _ in 0..32 {
        if let Some(r) = node.get("$ref").and_then(Json::as_str) {
            let name = r.rsplit('/').next().unwrap();
            node = schema
                .get("definitions")
                .or_else(|| schema.get("$defs"))
                .and_then(|d| d.get(name))
                .unwrap_or_else(|| panic!("{SCHEMA}: dangling $ref {r}"));
            continue;
        }
        let wrapped = ["allOf", "anyOf", "oneOf"].iter().find_map(|k| {
            let alts: Vec<&Json> = node
                .get(*k)?
                .as_array()?
                .iter()
                .filter(|a| a.get("type").and_then(Json::as_str) != Some("null"))
                .collect();
            (alts.len() == 1).then(|| alts[0])
        });
        match wrapped {
            Some(inner) => node = inner,
            None => return node,
        }
    }
    panic!("{SCHEMA}: $ref chain too deep")
}

/// The alternatives of a schema that is a choice (`anyOf`/`oneOf` of several), resolved.
fn alternatives<'a>(schema: &'a Json, node: &'a Json) -> Vec<&'a Json> {
    ["anyOf", "oneOf"]
        .iter()
        .filter_map(|k| node.get(*k)?.as_array())
        .flatten()
        .filter(|a| a.get("type").and_then(Json::as_str) != Some("null"))
        .map(|a| resolve(schema, a))
        .collect()
}

fn is_table_of_keys(node: &Json) -> bool {
    node.get("properties").is_some()
}

/// The type of a schema in the reference's words: `string`, `list of strings`,
/// `map of integers`, `table`, `integer or string`, ...
fn type_words(schema: &Json, node: &Json) -> String {
    let node = resolve(schema, node);
    let alts = alternatives(schema, node);
    if !alts.is_empty() {
        let words: Vec<String> = alts.iter().map(|a| type_words(schema, a)).collect();
        return words.join(" or ");
    }
    let ty = match node.get("type") {
        Some(Json::String(t)) => t.as_str(),
        Some(Json::Array(ts)) => ts
            .iter()
            .filter_map(Json::as_str)
            .find(|t| *t != "null")
            .unwrap_or("null"),
        _ => "any",
    };
    // `integer or string` -> `integers or strings`.
    let plural = |n: &Json| {
        type_words(schema, n)
            .split(" or ")
            .map(|w| format!("{w}s"))
            .collect::<Vec<_>>()
            .join(" or ")
    };
    match ty {
        "array" => format!(
            "list of {}",
            plural(node.get("items").unwrap_or(&Json::Null))
        ),
        "object" if is_table_of_keys(node) => "table".into(),
        "object" => match node.get("additionalProperties") {
            Some(v @ Json::Object(_)) => format!("map of {}", plural(v)),
            _ => "table".into(),
        },
        other => other.into(),
    }
}

/// One key the schema knows: its dotted path (`service.*.health.http`; `*` for a name you
/// choose; arrays of tables add no segment), whether it is required, its type.
struct SchemaKey {
    required: bool,
    type_words: String,
}

fn schema_keys(schema: &Json) -> BTreeMap<String, SchemaKey> {
    fn walk(schema: &Json, node: &Json, path: &str, out: &mut BTreeMap<String, SchemaKey>) {
        let node = resolve(schema, node);
        for alt in alternatives(schema, node) {
            walk(schema, alt, path, out);
        }
        if let Some(items) = node.get("items") {
            walk(schema, items, path, out);
        }
        let join = |key: &str| {
            if path.is_empty() {
                key.to_string()
            } else {
                format!("{path}.{key}")
            }
        };
        if let Some(props) = node.get("properties").and_then(Json::as_object) {
            let required: BTreeSet<&str> = node
                .get("required")
                .and_then(Json::as_array)
                .into_iter()
                .flatten()
                .filter_map(Json::as_str)
                .collect();
            for (key, sub) in props {
                let p = join(key);
                out.insert(
                    p.clone(),
                    SchemaKey {
                        required: required.contains(key.as_str()),
                        type_words: type_words(schema, sub),
                    },
                );
                walk(schema, sub, &p, out);
            }
        }
        // A map of tables (`[service.NAME]`) has a level of names you choose; a map of
        // plain values (`env`) is one key, documented as such.
        if let Some(sub @ Json::Object(_)) = node.get("additionalProperties") {
            let sub = resolve(schema, sub);
            if is_table_of_keys(sub) {
                let p = join("*");
                out.insert(
                    p.clone(),
                    SchemaKey {
                        required: false,
                        type_words: "table".into(),
                    },
                );
                walk(schema, sub, &p, out);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(schema, schema, "", &mut out);
    out
}

/// Checks the keys of a TOML value against the schema: the key-check a block marked
/// "not validated" still gets.
fn check_keys(schema: &Json, node: &Json, value: &toml::Value, path: &str, errs: &mut Vec<String>) {
    let node = resolve(schema, node);
    let alts = alternatives(schema, node);
    if !alts.is_empty() {
        let mut best: Option<Vec<String>> = None;
        for alt in alts {
            let mut e = Vec::new();
            check_keys(schema, alt, value, path, &mut e);
            if best.as_ref().is_none_or(|b| e.len() < b.len()) {
                best = Some(e);
            }
        }
        errs.extend(best.unwrap_or_default());
        return;
    }
    match value {
        toml::Value::Table(t) => {
            let props = node.get("properties").and_then(Json::as_object);
            for (k, v) in t {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match (
                    props.and_then(|ps| ps.get(k)),
                    node.get("additionalProperties"),
                ) {
                    (Some(sub), _) => check_keys(schema, sub, v, &p, errs),
                    (None, Some(sub @ Json::Object(_))) => check_keys(schema, sub, v, &p, errs),
                    (None, _) if props.is_some() => errs.push(format!("unknown key `{p}`")),
                    _ => {}
                }
            }
        }
        toml::Value::Array(items) => {
            if let Some(sub) = node.get("items") {
                for v in items {
                    check_keys(schema, sub, v, path, errs);
                }
            }
        }
        _ => {}
    }
}

#[test]
fn every_toml_block_is_a_configuration_gantry_accepts() {
    let schema = schema();
    let (mut full, mut fragments, mut marked) = (0, 0, 0);
    let mut failures = Vec::new();
    for page in pages() {
        let text = read(&page);
        for block in split_fences(&text).0 {
            if block.lang != "toml" {
                continue;
            }
            let at = format!("{}:{}", page.display(), block.line);
            let first = block
                .body
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("");
            if let Some(reason) = first.trim().strip_prefix(MARKER) {
                marked += 1;
                if reason.trim().is_empty() {
                    failures.push(format!("{at}: `{MARKER}` needs a reason"));
                }
                match block.body.parse::<toml::Table>() {
                    Ok(t) => {
                        let mut errs = Vec::new();
                        check_keys(&schema, &schema, &toml::Value::Table(t), "", &mut errs);
                        failures.extend(errs.into_iter().map(|e| format!("{at}: {e}")));
                    }
                    Err(e) => failures.push(format!("{at}: not TOML: {e}")),
                }
                continue;
            }
            // Blank lines in front keep the diagnostics' line numbers those of the page.
            let is_full = block.body.lines().any(|l| l.trim() == "[project]");
            let source = if is_full {
                full += 1;
                format!("{}{}", "\n".repeat(block.line - 1), block.body)
            } else {
                fragments += 1;
                let pad = "\n".repeat(block.line.saturating_sub(3));
                format!("[project]\nname = \"docs-snippet\"\n{pad}{}", block.body)
            };
            let raw = gantry::config::parse(&source);
            if let Err(diags) = gantry::model::validate(raw, &DocFiles) {
                let how = if is_full {
                    "this block"
                } else {
                    "this fragment, inside `[project] name = \"docs-snippet\"`,"
                };
                failures.push(format!(
                    "{at}: gantry rejects {how} (fix it, or start it with `{MARKER} REASON`):\n{}",
                    gantry::diag::render_diagnostics(
                        &page.display().to_string(),
                        &source,
                        &diags,
                        false
                    )
                ));
            }
        }
    }
    println!(
        "docs: {} toml blocks checked: {full} full configurations and {fragments} fragments \
         validated by gantry, {marked} marked `{MARKER}` (keys checked against the schema)",
        full + fragments + marked
    );
    assert!(
        full + fragments > 0,
        "no ```toml block found: is the extraction broken?"
    );
    assert!(failures.is_empty(), "\n{}", failures.join("\n\n"));
}

/// A key the reference documents: where, and what its row says.
struct DocKey {
    line: usize,
    type_cell: Option<String>,
    default_cell: Option<String>,
}

/// The table path of a heading such as ``### `[service.NAME.health]` ``: `service.*.health`.
fn heading_path(heading: &str) -> Option<String> {
    let code = heading.split('`').nth(1)?;
    if !code.starts_with('[') {
        return None;
    }
    let inner = code.trim_matches(|c| c == '[' || c == ']');
    let segments: Vec<&str> = inner
        .split('.')
        .map(|s| {
            if !s.is_empty() && s.chars().all(|c| c.is_ascii_uppercase() || c == '_') {
                "*"
            } else {
                s
            }
        })
        .collect();
    Some(segments.join("."))
}

/// Reads the reference: headings naming a table (`[service.NAME]`) and, under them, rows of
/// tables whose first column is `key`.
fn documented_keys(text: &str) -> (BTreeMap<String, DocKey>, Vec<String>) {
    let mut keys = BTreeMap::new();
    let mut problems = Vec::new();
    let mut section: Option<String> = None;
    let mut columns: Option<Vec<String>> = None;
    for (line, l) in split_fences(text).1 {
        let t = l.trim();
        if t.starts_with('#') {
            section = heading_path(t);
            if let Some(p) = &section {
                keys.entry(p.clone()).or_insert(DocKey {
                    line,
                    type_cell: None,
                    default_cell: None,
                });
            }
            columns = None;
            continue;
        }
        if !t.starts_with('|') {
            columns = None;
            continue;
        }
        let cells: Vec<String> = t
            .trim_matches('|')
            .split(" | ")
            .map(|c| c.trim().trim_matches('|').trim().to_string())
            .collect();
        if t.chars().all(|ch| "|-: ".contains(ch)) {
            continue;
        }
        let Some(cols) = &columns else {
            if cells.first().is_some_and(|c| c == "key") {
                columns = Some(cells);
            } else {
                columns = Some(Vec::new());
            }
            continue;
        };
        if cols.is_empty() {
            continue;
        }
        let Some(key) = cells[0].strip_prefix('`').and_then(|k| k.strip_suffix('`')) else {
            problems.push(format!(
                "{REFERENCE}:{line}: the first cell of a key row must be a `key`, found {}",
                cells[0]
            ));
            continue;
        };
        let Some(sec) = &section else {
            problems.push(format!(
                "{REFERENCE}:{line}: key `{key}` is not under a heading that names its table, e.g. ## `[service.NAME]`"
            ));
            continue;
        };
        let cell = |name: &str| {
            cols.iter()
                .position(|c| c == name)
                .and_then(|i| cells.get(i).cloned())
        };
        let path = if sec.is_empty() {
            key.to_string()
        } else {
            format!("{sec}.{key}")
        };
        if keys.contains_key(&path) && keys[&path].type_cell.is_some() {
            problems.push(format!("{REFERENCE}:{line}: `{path}` is documented twice"));
        }
        keys.insert(
            path,
            DocKey {
                line,
                type_cell: cell("type"),
                default_cell: cell("default"),
            },
        );
    }
    (keys, problems)
}

/// How the reference names the table of a path: `service.*.health` -> `[service.NAME.health]`.
fn table_heading(path: &str) -> String {
    match path.rsplit_once('.') {
        None if path == "host" => "`[[host]]`".into(),
        None => format!("`[{path}]`"),
        Some((parent, _)) => {
            let parent = parent.replace('*', "NAME");
            if parent == "host" {
                "`[[host]]`".into()
            } else {
                format!("`[{parent}]`")
            }
        }
    }
}

#[test]
fn configuration_reference_matches_the_schema() {
    let schema = schema();
    let known = schema_keys(&schema);
    let (documented, mut problems) = documented_keys(&read(Path::new(REFERENCE)));
    let mut rows = 0;
    for (path, key) in &known {
        let covered = documented.contains_key(path)
            || documented
                .keys()
                .any(|d| d.starts_with(&format!("{path}.")));
        if !covered {
            let leaf = path.rsplit('.').next().unwrap();
            problems.push(format!(
                "{REFERENCE} does not document `{path}`, a key of {SCHEMA}: add a row for \
                 `{leaf}` (type {}) to the key table under the heading {}",
                key.type_words,
                table_heading(path)
            ));
        }
    }
    for (path, doc) in &documented {
        let Some(key) = known.get(path) else {
            problems.push(format!(
                "{REFERENCE}:{}: documents `{path}`, which {SCHEMA} does not have (removed or renamed?)",
                doc.line
            ));
            continue;
        };
        let (Some(ty), Some(default)) = (&doc.type_cell, &doc.default_cell) else {
            continue;
        };
        rows += 1;
        // The reference's words for strings with a format of their own.
        let doc_type = ty.replace("duration", "string").replace("size", "string");
        if doc_type != key.type_words {
            problems.push(format!(
                "{REFERENCE}:{}: `{path}` has type `{ty}`, the schema says `{}`",
                doc.line, key.type_words
            ));
        }
        let says_required = default.starts_with("required");
        if says_required != key.required {
            problems.push(format!(
                "{REFERENCE}:{}: `{path}` is {} in {SCHEMA} but its default cell says `{default}`",
                doc.line,
                if key.required { "required" } else { "optional" },
            ));
        }
    }
    println!(
        "docs: {REFERENCE} checked against the {} keys of {SCHEMA} ({rows} key rows with type and default)",
        known.len()
    );
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

/// GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens.
fn slug(heading: &str) -> String {
    heading
        .trim_start_matches('#')
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

fn anchors(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for (_, line) in split_fences(text).1 {
        if line.starts_with('#') {
            let s = slug(line);
            let n = seen.entry(s.clone()).or_insert(0);
            out.insert(if *n == 0 {
                s.clone()
            } else {
                format!("{s}-{n}")
            });
            *n += 1;
        }
        for part in line.split("id=\"").skip(1) {
            if let Some(id) = part.split('"').next() {
                out.insert(id.to_string());
            }
        }
    }
    out
}

/// The targets of the inline links `[text](target)` of a line, code spans left out.
fn link_targets(line: &str) -> Vec<String> {
    let prose: String = line
        .split('`')
        .enumerate()
        .filter(|(i, _)| i % 2 == 0)
        .map(|(_, s)| s)
        .collect::<Vec<_>>()
        .join(" ");
    prose
        .split("](")
        .skip(1)
        .filter_map(|rest| rest.split(')').next())
        .map(|t| t.split_whitespace().next().unwrap_or("").to_string())
        .collect()
}

#[test]
fn links_between_pages_resolve() {
    let mut checked = 0;
    let mut problems = Vec::new();
    for page in pages() {
        let text = read(&page);
        let dir = page.parent().unwrap_or(Path::new(""));
        for (line, l) in split_fences(&text).1 {
            for target in link_targets(l) {
                if target.contains("://") || target.starts_with("mailto:") {
                    continue;
                }
                checked += 1;
                let (file, anchor) = target.split_once('#').unwrap_or((&target, ""));
                let rel = if file.is_empty() {
                    page.clone()
                } else {
                    dir.join(file)
                };
                let at = format!("{}:{line}", page.display());
                if !root().join(&rel).exists() {
                    problems.push(format!(
                        "{at}: link `{target}`: {} does not exist",
                        rel.display()
                    ));
                    continue;
                }
                if !anchor.is_empty() && rel.extension().is_some_and(|e| e == "md") {
                    let found = anchors(&read(&rel));
                    if !found.contains(anchor) {
                        problems.push(format!(
                            "{at}: link `{target}`: {} has no heading `#{anchor}` (it has: {})",
                            rel.display(),
                            found.into_iter().collect::<Vec<_>>().join(", ")
                        ));
                    }
                }
            }
        }
    }
    println!("docs: {checked} relative links checked");
    assert!(
        checked > 0,
        "no relative link found: is the extraction broken?"
    );
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}
