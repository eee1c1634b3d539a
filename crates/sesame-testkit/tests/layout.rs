//! The workspace's shape, checked: no import cycle between source files, no
//! file over 1,000 lines of non-test code, the daemon's driver under 600,
//! and no crate holding 35% or more of the non-test lines (issue 15).
//!
//! Lines are counted without blank lines and without inline `#[cfg(test)]`
//! items, and `tests/` and `benches/` are not counted. An
//! import is a `use` of, or a path into, another file's module (`crate::`,
//! `super::`, `self::` or a child module's name): a child that reaches its
//! parent while the parent reaches the child is a cycle.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

const MAX_FILE_LINES: usize = 1000;
const MAX_DRIVER_LINES: usize = 600;
const MAX_CRATE_SHARE: f64 = 0.35;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `src` without its `#[cfg(test)]` items (a block, or an item up to `;`).
fn strip_tests(src: &str) -> String {
    let mut out = String::new();
    let mut rest = src;
    while let Some(at) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..at]);
        let item = &rest[at..];
        let brace = item.find('{');
        let semi = item.find(';');
        let end = match (brace, semi) {
            (_, Some(s)) if brace.is_none_or(|b| s < b) => s + 1,
            (Some(b), _) => {
                let mut depth = 0usize;
                let mut end = item.len();
                for (i, c) in item[b..].char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' => {
                            depth -= 1;
                            if depth == 0 {
                                end = b + i + 1;
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                end
            }
            _ => item.len(),
        };
        rest = &item[end..];
    }
    out.push_str(rest);
    out
}

/// Code without comments, string and character literals.
fn code_only(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let mut depth = 0;
                while i < b.len() {
                    if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                        depth += 1;
                        i += 2;
                    } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
            }
            b'r' if matches!(b.get(i + 1), Some(b'"' | b'#'))
                && (i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_')) =>
            {
                let mut j = i + 1;
                let mut hashes = 0;
                while b.get(j) == Some(&b'#') {
                    hashes += 1;
                    j += 1;
                }
                if b.get(j) != Some(&b'"') {
                    out.push('r');
                    i += 1;
                    continue;
                }
                j += 1;
                loop {
                    if j >= b.len() {
                        break;
                    }
                    if b[j] == b'"'
                        && b[j + 1..]
                            .iter()
                            .take(hashes)
                            .filter(|&&c| c == b'#')
                            .count()
                            == hashes
                    {
                        j += 1 + hashes;
                        break;
                    }
                    j += 1;
                }
                out.push_str("\"\"");
                i = j;
            }
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
                out.push_str("\"\"");
            }
            b'\'' => {
                // A char literal ('x', '\n', '"'), not a lifetime.
                let close = if b.get(i + 1) == Some(&b'\\') {
                    b[i + 2..]
                        .iter()
                        .position(|&c| c == b'\'')
                        .map(|p| i + 2 + p)
                } else {
                    let len = src[i + 1..].chars().next().map_or(1, char::len_utf8);
                    (b.get(i + 1 + len) == Some(&b'\'')).then_some(i + 1 + len)
                };
                match close {
                    Some(c) => {
                        out.push_str("' '");
                        i = c + 1;
                    }
                    None => {
                        out.push('\'');
                        i += 1;
                    }
                }
            }
            _ => {
                let len = src[i..].chars().next().map_or(1, char::len_utf8);
                out.push_str(&src[i..i + len]);
                i += len;
            }
        }
    }
    out
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Ident(String),
    PathSep,
    Punct(char),
}

fn tokens(code: &str) -> Vec<Token> {
    let mut out = Vec::new();
    let mut chars = code.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c.is_alphabetic() || c == '_' {
            let mut end = i + c.len_utf8();
            while let Some(&(j, d)) = chars.peek() {
                if d.is_alphanumeric() || d == '_' {
                    end = j + d.len_utf8();
                    chars.next();
                } else {
                    break;
                }
            }
            out.push(Token::Ident(code[i..end].to_string()));
        } else if c == ':' && chars.peek().map(|&(_, d)| d) == Some(':') {
            chars.next();
            out.push(Token::PathSep);
        } else if !c.is_whitespace() {
            out.push(Token::Punct(c));
        }
    }
    out
}

/// The paths a `use` tree names, from `toks` (after `use`, before `;`).
fn use_paths(toks: &[Token], prefix: &[String], out: &mut Vec<Vec<String>>) {
    let mut path = prefix.to_vec();
    let mut i = 0;
    while i < toks.len() {
        match &toks[i] {
            Token::Ident(s) if s == "as" => break,
            Token::Ident(s) => path.push(s.clone()),
            Token::PathSep => {}
            Token::Punct('{') => {
                // Split the group's members at top-level commas.
                let mut depth = 0;
                let mut start = i + 1;
                for j in i + 1..toks.len() {
                    match toks[j] {
                        Token::Punct('{') => depth += 1,
                        Token::Punct('}') if depth == 0 => {
                            use_paths(&toks[start..j], &path, out);
                            return;
                        }
                        Token::Punct('}') => depth -= 1,
                        Token::Punct(',') if depth == 0 => {
                            use_paths(&toks[start..j], &path, out);
                            start = j + 1;
                        }
                        _ => {}
                    }
                }
                return;
            }
            Token::Punct(_) => break,
        }
        i += 1;
    }
    if path.len() > prefix.len() {
        out.push(path);
    }
}

struct SourceFile {
    /// The package the file belongs to.
    package: String,
    /// Its module tree: the package's library, or one binary of it.
    crate_name: String,
    module: Vec<String>,
    path: PathBuf,
    code: String,
    lines: usize,
}

fn source_files() -> Vec<SourceFile> {
    let root = workspace().join("crates");
    let mut files = Vec::new();
    let mut crates: Vec<_> = fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    crates.sort();
    for dir in crates {
        let src = dir.join("src");
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        let mut stack = vec![src.clone()];
        while let Some(d) = stack.pop() {
            for e in fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                    continue;
                }
                if p.extension().is_none_or(|x| x != "rs") {
                    continue;
                }
                let rel = p.strip_prefix(&src).unwrap().with_extension("");
                let mut module: Vec<String> = rel
                    .iter()
                    .map(|s| s.to_string_lossy().to_string())
                    .collect();
                // A binary (src/bin/NAME.rs) is a crate of its own.
                let crate_name = if module.first().is_some_and(|m| m == "bin") {
                    let bin = module.remove(1);
                    module.clear();
                    format!("{name} (bin {bin})")
                } else {
                    name.clone()
                };
                if module.len() == 1 && (module[0] == "lib" || module[0] == "main") {
                    module.clear();
                } else if module.last().is_some_and(|m| m == "mod") {
                    module.pop();
                }
                let text = strip_tests(&fs::read_to_string(&p).unwrap());
                let lines = text.lines().filter(|l| !l.trim().is_empty()).count();
                files.push(SourceFile {
                    package: name.clone(),
                    crate_name,
                    module,
                    path: p.clone(),
                    code: code_only(&text),
                    lines,
                });
            }
        }
    }
    files
}

fn short(p: &Path) -> String {
    let root = workspace().canonicalize().unwrap();
    let p = p.canonicalize().unwrap();
    p.strip_prefix(&root).unwrap_or(&p).display().to_string()
}

/// Edges between files: file index -> indices of the files it imports.
fn import_graph(files: &[SourceFile]) -> Vec<BTreeSet<usize>> {
    let index: BTreeMap<(String, Vec<String>), usize> = files
        .iter()
        .enumerate()
        .map(|(i, f)| ((f.crate_name.clone(), f.module.clone()), i))
        .collect();
    let mut edges = vec![BTreeSet::new(); files.len()];
    for (me, f) in files.iter().enumerate() {
        let toks = tokens(&f.code);
        let children: BTreeSet<String> = toks
            .windows(3)
            .filter_map(|w| match w {
                [Token::Ident(m), Token::Ident(name), Token::Punct(';')] if m == "mod" => {
                    Some(name.clone())
                }
                _ => None,
            })
            .collect();
        let mut paths = Vec::new();
        let mut i = 0;
        while i < toks.len() {
            if toks[i] == Token::Ident("use".into()) {
                let end = toks[i..]
                    .iter()
                    .position(|t| *t == Token::Punct(';'))
                    .map_or(toks.len(), |p| i + p);
                use_paths(&toks[i + 1..end], &[], &mut paths);
                i = end;
                continue;
            }
            if let Token::Ident(first) = &toks[i] {
                let starts_path = matches!(first.as_str(), "crate" | "super" | "self")
                    || children.contains(first);
                let after_sep = i > 0 && toks[i - 1] == Token::PathSep;
                if starts_path && !after_sep && toks.get(i + 1) == Some(&Token::PathSep) {
                    let mut path = vec![first.clone()];
                    let mut j = i + 1;
                    while toks.get(j) == Some(&Token::PathSep) {
                        match toks.get(j + 1) {
                            Some(Token::Ident(s)) => path.push(s.clone()),
                            _ => break,
                        }
                        j += 2;
                    }
                    paths.push(path);
                    i = j;
                    continue;
                }
            }
            i += 1;
        }
        for path in paths {
            let mut full = f.module.clone();
            let mut rest = path.as_slice();
            match rest.first().map(String::as_str) {
                Some("crate") => {
                    full.clear();
                    rest = &rest[1..];
                }
                Some("super" | "self") => {
                    while let Some(s) = rest.first() {
                        match s.as_str() {
                            "super" => {
                                full.pop();
                            }
                            "self" => {}
                            _ => break,
                        }
                        rest = &rest[1..];
                    }
                }
                Some(c) if children.contains(c) => {}
                _ => continue,
            }
            full.extend(rest.iter().cloned());
            // The longest prefix that is a file's module.
            let target = (0..=full.len())
                .rev()
                .find_map(|n| index.get(&(f.crate_name.clone(), full[..n].to_vec())));
            if let Some(&t) = target {
                if t != me {
                    edges[me].insert(t);
                }
            }
        }
    }
    edges
}

/// One cycle of the graph, if any, as a list of file indices.
fn find_cycle(edges: &[BTreeSet<usize>]) -> Option<Vec<usize>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    fn visit(
        v: usize,
        edges: &[BTreeSet<usize>],
        mark: &mut [Mark],
        path: &mut Vec<usize>,
    ) -> Option<Vec<usize>> {
        mark[v] = Mark::Open;
        path.push(v);
        for &w in &edges[v] {
            match mark[w] {
                Mark::Open => {
                    let at = path.iter().position(|&p| p == w).unwrap();
                    return Some(path[at..].to_vec());
                }
                Mark::New => {
                    if let Some(c) = visit(w, edges, mark, path) {
                        return Some(c);
                    }
                }
                Mark::Done => {}
            }
        }
        path.pop();
        mark[v] = Mark::Done;
        None
    }
    let mut mark = vec![Mark::New; edges.len()];
    (0..edges.len()).find_map(|v| {
        if mark[v] == Mark::New {
            visit(v, edges, &mut mark, &mut Vec::new())
        } else {
            None
        }
    })
}

#[test]
fn no_import_cycle_between_files() {
    let files = source_files();
    assert!(files.len() > 50, "found only {} source files", files.len());
    let edges = import_graph(&files);
    // The checker sees real imports: the engine's files reach its state.
    let find = |s: &str| files.iter().position(|f| f.path.ends_with(s)).unwrap();
    assert!(edges[find("engine/flows.rs")].contains(&find("engine/state.rs")));
    if let Some(cycle) = find_cycle(&edges) {
        let names: Vec<String> = cycle.iter().map(|&i| short(&files[i].path)).collect();
        panic!(
            "import cycle: {} -> (back to the first)",
            names.join(" -> ")
        );
    }
}

/// A two-file crate `x`: its root and module `child`.
fn tiny_crate(root: &str, child: &str) -> Vec<SourceFile> {
    let file = |module: Vec<String>, path: &str, src: &str| SourceFile {
        package: "x".into(),
        crate_name: "x".into(),
        module,
        path: path.into(),
        code: code_only(&strip_tests(src)),
        lines: src.lines().count(),
    };
    vec![
        file(vec![], "lib.rs", root),
        file(vec!["child".into()], "child.rs", child),
    ]
}

#[test]
fn the_checker_finds_a_parent_child_cycle() {
    let parent = "mod child;\npub use child::Thing;\npub struct Shared;\n";
    let child = "use super::Shared;\npub struct Thing(Shared);\n";
    assert_eq!(
        find_cycle(&import_graph(&tiny_crate(parent, child))),
        Some(vec![0, 1])
    );
    // Comments, strings and test modules do not count.
    let child = "// use super::Shared;\nconst S: &str = \"super::Shared\";\n#[cfg(test)]\nmod tests { use super::super::Shared; }\n";
    assert_eq!(find_cycle(&import_graph(&tiny_crate(parent, child))), None);
}

#[test]
fn no_file_over_a_thousand_lines_of_non_test_code() {
    let too_long: Vec<String> = source_files()
        .iter()
        .filter(|f| f.lines > MAX_FILE_LINES)
        .map(|f| format!("{} ({} lines)", short(&f.path), f.lines))
        .collect();
    assert!(
        too_long.is_empty(),
        "over {MAX_FILE_LINES} non-test lines: {too_long:?}"
    );
}

#[test]
fn the_daemon_driver_stays_small() {
    let files = source_files();
    let driver = files
        .iter()
        .find(|f| f.path.ends_with("crates/sesame/src/daemon/driver.rs"))
        .expect("the daemon's driver");
    assert!(
        driver.lines < MAX_DRIVER_LINES,
        "daemon/driver.rs has {} non-test lines (limit {MAX_DRIVER_LINES})",
        driver.lines
    );
}

#[test]
fn no_crate_holds_35_percent_of_the_lines() {
    let mut per_crate: BTreeMap<String, usize> = BTreeMap::new();
    for f in source_files() {
        *per_crate.entry(f.package).or_default() += f.lines;
    }
    let total: usize = per_crate.values().sum();
    for (name, lines) in &per_crate {
        let share = *lines as f64 / total as f64;
        assert!(
            share < MAX_CRATE_SHARE,
            "{name} holds {lines} of {total} non-test lines ({:.1}%)",
            share * 100.0
        );
    }
}
