//! Diagnostics that point at `file:line:col`, and the locator that finds those positions.
//!
//! pilota-thrift-parser keeps no spans in its AST, so positions are recovered from the source
//! text: the locator searches a copy of the file in which comments and string contents are
//! blanked out (offsets preserved), so a name inside a comment or a string never matches.

use std::{
    fmt,
    path::{Path, PathBuf},
};

/// One error in the IDL, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub path: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, counted in characters.
    pub col: usize,
    pub message: String,
}

impl Diagnostic {
    /// `path:line:col: message`, for contexts that add their own `error:` (cargo).
    pub fn brief(&self) -> String {
        format!(
            "{}:{}:{}: {}",
            self.path.display(),
            self.line,
            self.col,
            self.message
        )
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: error: {}",
            self.path.display(),
            self.line,
            self.col,
            self.message
        )
    }
}

/// Every error found in one run; checks go on after the first so a user fixes them all at once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    pub fn push(&mut self, d: Diagnostic) {
        self.0.push(d);
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter()
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.0 {
            writeln!(f, "{d}")?;
        }
        let n = self.0.len();
        write!(f, "{n} error{} in the IDL", if n == 1 { "" } else { "s" })
    }
}

impl std::error::Error for Diagnostics {}

/// A source file's text, with the blanked copy the searches run on.
#[derive(Debug)]
pub struct Source {
    pub path: PathBuf,
    pub text: String,
    /// `text` with comments and the insides of string literals replaced by spaces.
    masked: String,
}

impl Source {
    pub fn new(path: &Path, text: String) -> Self {
        let masked = mask(&text);
        Self {
            path: path.to_path_buf(),
            text,
            masked,
        }
    }

    /// A diagnostic at byte `offset` of this file.
    pub fn at(&self, offset: usize, message: impl Into<String>) -> Diagnostic {
        let (line, col) = line_col(&self.text, offset);
        Diagnostic {
            path: self.path.clone(),
            line,
            col,
            message: message.into(),
        }
    }

    /// Byte offset of the declaration `keyword Name` (e.g. `struct User`), or 0.
    pub fn item(&self, keywords: &[&str], name: &str) -> usize {
        keywords
            .iter()
            .filter_map(|kw| self.declaration(kw, name))
            .min()
            .unwrap_or(0)
    }

    fn declaration(&self, keyword: &str, name: &str) -> Option<usize> {
        let mut from = 0;
        loop {
            let after = self.find_word(keyword, from)? + keyword.len();
            let rest = &self.masked[after..];
            let name_at = after + (rest.len() - rest.trim_start().len());
            if self.masked[name_at..].starts_with(name)
                && is_word_end(&self.masked, name_at + name.len())
            {
                return Some(name_at);
            }
            from = after;
        }
    }

    /// Byte offset of the word `name` after `from` (a field or method inside an item), or `from`.
    pub fn member(&self, from: usize, name: &str) -> usize {
        let body = self.masked[from..].find('{').map_or(from, |i| from + i);
        self.find_word(name, body).unwrap_or(from)
    }

    /// Byte offset of `word` on the same line before `at` (a field's type before its name),
    /// or `at` when it is not there.
    pub fn word_before(&self, at: usize, word: &str) -> usize {
        let line_start = self.masked[..at].rfind('\n').map_or(0, |i| i + 1);
        self.masked[line_start..at]
            .rfind(word)
            .map_or(at, |i| line_start + i)
    }

    /// Byte offset of the value literal of annotation `key` after `from`: the opening quote.
    pub fn annotation_value(&self, from: usize, key: &str) -> Option<usize> {
        let mut search = from;
        loop {
            let at = self.find_word(key, search)?;
            let after = &self.masked[at + key.len()..];
            let trimmed = after.trim_start();
            if let Some(rest) = trimmed.strip_prefix('=') {
                let quote = rest.find(['"', '\''])?;
                return Some(at + key.len() + (after.len() - trimmed.len()) + 1 + quote);
            }
            search = at + key.len();
        }
    }

    /// A diagnostic inside the literal whose opening quote is at `quote`, at char offset
    /// `value_offset` of its unescaped value.
    pub fn in_literal(
        &self,
        quote: usize,
        value_offset: usize,
        message: impl Into<String>,
    ) -> Diagnostic {
        let raw = &self.text[quote + 1..];
        let mut unescaped = 0;
        let mut chars = raw.char_indices();
        let mut pos = raw.len();
        while let Some((i, c)) = chars.next() {
            if unescaped >= value_offset {
                pos = i;
                break;
            }
            if c == '\\' {
                chars.next();
            }
            unescaped += c.len_utf8();
        }
        self.at(quote + 1 + pos, message)
    }

    fn find_word(&self, word: &str, from: usize) -> Option<usize> {
        let mut start = from;
        while let Some(i) = self.masked.get(start..)?.find(word) {
            let at = start + i;
            let before_ok = at == 0 || !is_ident_char(self.masked[..at].chars().next_back()?);
            if before_ok && is_word_end(&self.masked, at + word.len()) {
                return Some(at);
            }
            start = at + word.len();
        }
        None
    }
}

fn is_ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '.'
}

fn is_word_end(text: &str, at: usize) -> bool {
    text[at..].chars().next().is_none_or(|c| !is_ident_char(c))
}

/// 1-based line and character column of byte `offset`.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

/// Blanks comments (`//`, `#`, `/* */`) and string contents, keeping every byte offset.
fn mask(text: &str) -> String {
    #[derive(PartialEq)]
    enum State {
        Code,
        Line,
        Block,
        Str(char),
    }
    let mut out = String::with_capacity(text.len());
    let mut state = State::Code;
    let mut chars = text.chars().peekable();
    let blank = |c: char, out: &mut String| {
        if c == '\n' {
            out.push('\n');
        } else {
            out.extend(std::iter::repeat_n(' ', c.len_utf8()));
        }
    };
    while let Some(c) = chars.next() {
        match state {
            State::Code => match c {
                '/' if chars.peek() == Some(&'/') => {
                    state = State::Line;
                    blank(c, &mut out);
                }
                '/' if chars.peek() == Some(&'*') => {
                    state = State::Block;
                    blank(c, &mut out);
                    blank(chars.next().unwrap_or(' '), &mut out);
                }
                '#' => {
                    state = State::Line;
                    blank(c, &mut out);
                }
                '"' | '\'' => {
                    state = State::Str(c);
                    out.push(c);
                }
                _ => out.push(c),
            },
            State::Line => {
                if c == '\n' {
                    state = State::Code;
                }
                blank(c, &mut out);
            }
            State::Block => {
                if c == '*' && chars.peek() == Some(&'/') {
                    blank(c, &mut out);
                    blank(chars.next().unwrap_or(' '), &mut out);
                    state = State::Code;
                } else {
                    blank(c, &mut out);
                }
            }
            State::Str(q) => {
                if c == '\\' {
                    blank(c, &mut out);
                    if let Some(n) = chars.next() {
                        blank(n, &mut out);
                    }
                } else if c == q {
                    state = State::Code;
                    out.push(c);
                } else {
                    blank(c, &mut out);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDL: &str = "// struct Fake in a comment\nstruct User {\n    1: required string name (api.vd = \"len($) > 0\"),\n}\nservice S {\n    R Get(1: User u) (api.get = '/x')\n}\n";

    fn src() -> Source {
        Source::new(Path::new("a.thrift"), IDL.to_string())
    }

    #[test]
    fn finds_items_members_and_annotations_outside_comments() {
        let s = src();
        let user = s.item(&["struct"], "User");
        assert_eq!(line_col(IDL, user), (2, 8));
        assert_eq!(
            s.item(&["struct"], "Fake"),
            0,
            "a comment is not a declaration"
        );
        let name = s.member(user, "name");
        assert_eq!(line_col(IDL, name), (3, 24));
        let vd = s.annotation_value(name, "api.vd").unwrap();
        assert_eq!(&IDL[vd..vd + 1], "\"");
        let get = s.member(s.item(&["service"], "S"), "Get");
        assert_eq!(line_col(IDL, get), (6, 7));
        let route = s.annotation_value(get, "api.get").unwrap();
        assert_eq!(&IDL[route..route + 1], "'");
    }

    #[test]
    fn literal_offsets_account_for_escapes() {
        let text = "x (api.vd = \"regexp('\\\\d') && bad\")".to_string();
        let s = Source::new(Path::new("b.thrift"), text);
        let q = s.annotation_value(0, "api.vd").unwrap();
        // Unescaped value: `regexp('\d') && bad`; `bad` starts at char 16 of it, 17 raw.
        let d = s.in_literal(q, 16, "here");
        assert_eq!((d.line, d.col), (1, 14 + 17));
    }

    #[test]
    fn display_is_file_line_col() {
        let d = src().at(IDL.find("service").unwrap(), "boom");
        assert_eq!(d.to_string(), "a.thrift:5:1: error: boom");
    }
}
