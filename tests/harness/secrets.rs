//! Secrets a scenario chooses instead of random ones, and the search for them wherever a pod may
//! have left them: in any encoding a leak could take on its way out.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use aho_corasick::AhoCorasick;
use anyhow::{Context, Result};

/// The values of the Secret every pod mounts, by what they are for.
#[derive(Clone, Debug)]
pub struct Secrets {
    /// The database's root password, which the agent's sidecar also uses as its admin password.
    pub root_password: String,
    pub repl_password: String,
    /// MySQL: the clone user's.
    pub clone_password: String,
    /// MariaDB: the bearer token of every pod's `/clone`.
    pub clone_token: String,
}

impl Secrets {
    /// By the key of the Secret (k8s/secret.example.yaml) that holds each one.
    pub fn by_key(&self) -> BTreeMap<String, String> {
        [
            ("root-password", &self.root_password),
            ("repl-password", &self.repl_password),
            ("clone-password", &self.clone_password),
            ("clone-token", &self.clone_token),
        ]
        .into_iter()
        .map(|(key, value)| (key.to_owned(), value.clone()))
        .collect()
    }
}

/// How much of a match's line a finding shows on either side (binary files have long "lines").
const CONTEXT: usize = 80;

/// One form of one secret.
struct Needle {
    key: String,
    encoding: &'static str,
}

/// Every secret in every encoding, searched for at once.
pub struct SecretSearch {
    needles: Vec<Needle>,
    automaton: AhoCorasick,
}

impl SecretSearch {
    pub fn new(secrets: &Secrets) -> Result<SecretSearch> {
        let mut needles = Vec::new();
        let mut patterns: Vec<String> = Vec::new();
        for (key, secret) in secrets.by_key() {
            for (encoding, form) in encodings(&secret) {
                // Encodings that give the same form are searched once.
                if !patterns.contains(&form) {
                    needles.push(Needle {
                        key: key.clone(),
                        encoding,
                    });
                    patterns.push(form);
                }
            }
        }
        Ok(SecretSearch {
            needles,
            automaton: AhoCorasick::new(&patterns)?,
        })
    }

    /// Each occurrence of a secret in `content`, which `place` names.
    pub fn scan(&self, place: &str, content: &[u8]) -> Vec<Finding> {
        self.automaton
            .find_overlapping_iter(content)
            .map(|found| {
                let needle = &self.needles[found.pattern().as_usize()];
                let before = &content[..found.start()];
                let number = before.iter().filter(|&&byte| byte == b'\n').count() + 1;
                let line_start = before
                    .iter()
                    .rposition(|&byte| byte == b'\n')
                    .map_or(0, |newline| newline + 1)
                    .max(found.start().saturating_sub(CONTEXT));
                let line_end = content[found.end()..]
                    .iter()
                    .position(|&byte| byte == b'\n')
                    .map_or(content.len(), |newline| found.end() + newline)
                    .min(found.end() + CONTEXT);
                Finding {
                    place: place.to_owned(),
                    line: number,
                    key: needle.key.clone(),
                    encoding: needle.encoding,
                    context: String::from_utf8_lossy(&content[line_start..line_end]).into_owned(),
                }
            })
            .collect()
    }

    /// `scan` of every regular file below `dir`, but not below a path `excluded` names.
    pub fn scan_tree(&self, dir: &Path, excluded: &dyn Fn(&Path) -> bool) -> Result<Vec<Finding>> {
        let mut found = Vec::new();
        let mut dirs = vec![dir.to_owned()];
        while let Some(dir) = dirs.pop() {
            let entries =
                fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))?;
            for entry in entries {
                let path = entry?.path();
                if excluded(&path) {
                    continue;
                }
                let meta = fs::symlink_metadata(&path)?;
                if meta.is_dir() {
                    dirs.push(path);
                } else if meta.is_file() {
                    let content =
                        fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
                    found.extend(self.scan(&path.display().to_string(), &content));
                }
            }
        }
        Ok(found)
    }
}

/// A secret found: where, which one, in which form.
#[derive(Debug)]
pub struct Finding {
    /// A file's path, or what else was searched.
    pub place: String,
    pub line: usize,
    /// The Secret's key that holds it.
    pub key: String,
    pub encoding: &'static str,
    /// Its line, or as much of it as `CONTEXT` shows on either side.
    pub context: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} line {}: {} ({}) in {:?}",
            self.place, self.line, self.key, self.encoding, self.context
        )
    }
}

/// The forms a secret takes in the places it could leak to: as it is, and escaped for SQL (both
/// ways of escaping a quote), an option file, JSON (as serde and tracing write it, and with
/// non-ASCII as `\u` escapes), Rust's `Debug`, and a URL (percent-encoded, and as a form
/// encodes a space).
fn encodings(secret: &str) -> Vec<(&'static str, String)> {
    let backslashed = secret.replace('\\', "\\\\");
    let json = serde_json::to_string(secret).expect("a string serializes");
    let percent = percent_encoded(secret);
    vec![
        ("raw", secret.to_owned()),
        ("SQL-escaped", backslashed.replace('\'', "''")),
        ("SQL-escaped with \\'", backslashed.replace('\'', "\\'")),
        ("option-file-escaped", backslashed.replace('"', "\\\"")),
        ("JSON-escaped", json.trim_matches('"').to_owned()),
        ("JSON-escaped as ASCII", ascii_json(secret)),
        ("Debug", format!("{secret:?}").trim_matches('"').to_owned()),
        ("form-encoded", percent.replace("%20", "+")),
        ("percent-encoded", percent),
    ]
}

/// A JSON string's content with every non-ASCII character as `\uXXXX` (UTF-16 units).
fn ascii_json(secret: &str) -> String {
    let json = serde_json::to_string(secret).expect("a string serializes");
    let mut out = String::new();
    for c in json.trim_matches('"').chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    out
}

/// Every byte but RFC 3986's unreserved characters as `%XX`.
fn percent_encoded(secret: &str) -> String {
    secret
        .bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (byte as char).to_string()
            }
            _ => format!("%{byte:02X}"),
        })
        .collect()
}
