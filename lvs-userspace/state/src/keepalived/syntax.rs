//! keepalived.conf's syntax, as `keepalived.conf(5)` and keepalived's
//! `lib/parser.c` read it: a statement is the words of one line (a `\` at
//! the end continues it), `{` ... `}` hold a block of statements, `!` and
//! `#` start a comment, `"` quotes (the quotes go, the whitespace inside
//! stays; escapes are read as the shell's, as keepalived reads them in the
//! keywords that take them). `include PATTERN` splices in the
//! files a glob matches, a relative pattern read from the including file's
//! directory (keepalived changes into it).

use std::{
    fmt,
    path::{Path, PathBuf},
    sync::Arc,
};

/// Where a statement is: the file and its line (from 1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct At {
    pub file: Arc<Path>,
    pub line: usize,
}

impl fmt::Display for At {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

/// One statement: its keyword and arguments, and its block if it has one.
#[derive(Clone, Debug)]
pub struct Stmt {
    pub words: Vec<String>,
    pub block: Option<Vec<Stmt>>,
    pub at: At,
}

impl Stmt {
    pub fn keyword(&self) -> &str {
        &self.words[0]
    }

    pub fn args(&self) -> &[String] {
        &self.words[1..]
    }
}

/// A file that cannot be read or parsed: where, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub at: At,
    pub message: String,
}

/// Files within files: keepalived has no limit, a cycle needs one.
const MAX_INCLUDE_DEPTH: usize = 16;

/// Read `path` and every file it includes; `warn` hears of an include
/// pattern that matched nothing (keepalived's warning).
pub fn read(path: &Path, warn: &mut dyn FnMut(At, String)) -> Result<Vec<Stmt>, SyntaxError> {
    let from = At {
        file: Arc::from(path),
        line: 0,
    };
    read_file(path, &from, 0, warn)
}

fn read_file(
    path: &Path,
    from: &At,
    depth: usize,
    warn: &mut dyn FnMut(At, String),
) -> Result<Vec<Stmt>, SyntaxError> {
    let text = std::fs::read_to_string(path).map_err(|e| SyntaxError {
        at: from.clone(),
        message: format!("reading {}: {e}", path.display()),
    })?;
    let file: Arc<Path> = Arc::from(path);
    let tokens = tokenize(&text, &file)?;
    let mut parser = Parser {
        tokens,
        next: 0,
        file,
        depth,
        warn,
    };
    let stmts = parser.block(None)?;
    Ok(stmts)
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Word(String),
    Open,
    Close,
    EndOfLine,
}

/// The words of each line, braces as tokens of their own.
fn tokenize(text: &str, file: &Arc<Path>) -> Result<Vec<(Token, usize)>, SyntaxError> {
    let mut tokens = Vec::new();
    let mut line = 1;
    let mut chars = text.chars().peekable();
    let mut word: Option<String> = None;
    let at = |line| At {
        file: file.clone(),
        line,
    };
    let flush = |word: &mut Option<String>, tokens: &mut Vec<(Token, usize)>, line| {
        if let Some(w) = word.take() {
            tokens.push((Token::Word(w), line));
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'\n') => {
                chars.next();
                line += 1;
            }
            '\n' => {
                flush(&mut word, &mut tokens, line);
                tokens.push((Token::EndOfLine, line));
                line += 1;
            }
            '!' | '#' => {
                flush(&mut word, &mut tokens, line);
                while chars.peek().is_some_and(|c| *c != '\n') {
                    chars.next();
                }
            }
            '{' | '}' => {
                flush(&mut word, &mut tokens, line);
                tokens.push((if c == '{' { Token::Open } else { Token::Close }, line));
            }
            // keepalived's tokenizer quotes with `"` only (an apostrophe is
            // a character like any other).
            '"' => {
                let quote = c;
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some(c) if c == quote => break,
                        Some('\\') => escape(&mut chars, w),
                        // keepalived reads a quoted string within its line.
                        None | Some('\n') => {
                            return Err(SyntaxError {
                                at: at(line),
                                message: format!("unterminated {quote}-quoted string"),
                            })
                        }
                        Some(c) => w.push(c),
                    }
                }
            }
            c if c.is_whitespace() => flush(&mut word, &mut tokens, line),
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    flush(&mut word, &mut tokens, line);
    tokens.push((Token::EndOfLine, line));
    Ok(tokens)
}

/// A backslash escape inside quotes, as keepalived reads it (the shell's).
fn escape(chars: &mut std::iter::Peekable<std::str::Chars<'_>>, out: &mut String) {
    let Some(c) = chars.next() else {
        out.push('\\');
        return;
    };
    let digits = |chars: &mut std::iter::Peekable<std::str::Chars<'_>>, radix, max| {
        let mut value = 0u32;
        for _ in 0..max {
            match chars.peek().and_then(|c| c.to_digit(radix)) {
                Some(d) => {
                    value = value * radix + d;
                    chars.next();
                }
                None => break,
            }
        }
        char::from_u32(value & 0xff).unwrap_or('\0')
    };
    match c {
        'a' => out.push('\x07'),
        'b' => out.push('\x08'),
        'E' => out.push('\x1b'),
        'f' => out.push('\x0c'),
        'n' => out.push('\n'),
        'r' => out.push('\r'),
        't' => out.push('\t'),
        'v' => out.push('\x0b'),
        'x' => out.push(digits(chars, 16, 2)),
        '0'..='7' => {
            let mut value = c.to_digit(8).unwrap_or(0);
            for _ in 0..2 {
                match chars.peek().and_then(|c| c.to_digit(8)) {
                    Some(d) => {
                        value = value * 8 + d;
                        chars.next();
                    }
                    None => break,
                }
            }
            out.push(char::from_u32(value & 0xff).unwrap_or('\0'));
        }
        'c' => match chars.next() {
            Some(k) => {
                out.push(char::from_u32(u32::from(k.to_ascii_uppercase()) ^ 0x40).unwrap_or('\0'))
            }
            None => out.push('c'),
        },
        other => out.push(other),
    }
}

struct Parser<'w> {
    tokens: Vec<(Token, usize)>,
    next: usize,
    file: Arc<Path>,
    depth: usize,
    warn: &'w mut dyn FnMut(At, String),
}

impl Parser<'_> {
    fn at(&self, line: usize) -> At {
        At {
            file: self.file.clone(),
            line,
        }
    }

    fn peek(&self) -> Option<&(Token, usize)> {
        self.tokens.get(self.next)
    }

    /// Statements until the `}` that closes `opened_at` (or the end of the
    /// file, at the top).
    fn block(&mut self, opened_at: Option<usize>) -> Result<Vec<Stmt>, SyntaxError> {
        let mut stmts = Vec::new();
        loop {
            let Some((token, line)) = self.peek().cloned() else {
                return match opened_at {
                    None => Ok(stmts),
                    Some(l) => Err(SyntaxError {
                        at: self.at(l),
                        message: "this block's `{` is never closed".into(),
                    }),
                };
            };
            match token {
                Token::EndOfLine => self.next += 1,
                Token::Close => {
                    self.next += 1;
                    return match opened_at {
                        Some(_) => Ok(stmts),
                        None => Err(SyntaxError {
                            at: self.at(line),
                            message: "`}` closes no block".into(),
                        }),
                    };
                }
                Token::Open => {
                    return Err(SyntaxError {
                        at: self.at(line),
                        message: "`{` with no keyword before it".into(),
                    })
                }
                Token::Word(_) => {
                    let stmt = self.statement()?;
                    self.splice(stmt, &mut stmts)?;
                }
            }
        }
    }

    /// The words of one line and, if a `{` follows (on that line or the
    /// next), its block.
    fn statement(&mut self) -> Result<Stmt, SyntaxError> {
        let line = self.peek().map_or(0, |t| t.1);
        let mut words = Vec::new();
        while let Some((Token::Word(w), _)) = self.peek() {
            words.push(w.clone());
            self.next += 1;
        }
        let at = self.at(line);
        if let Some(first) = words.first() {
            if let Some(c) = first
                .chars()
                .next()
                .filter(|c| matches!(c, '@' | '$' | '~'))
            {
                let what = match c {
                    '@' => "conditional configuration (`@name`)",
                    '$' => "parameter substitution (`$NAME`)",
                    _ => "sequence blocks (`~SEQ`)",
                };
                return Err(SyntaxError {
                    at,
                    message: format!("{what} is not supported: write the statements out"),
                });
            }
        }
        // keepalived also takes a block's `{` at the start of the next line.
        let mut look = self.next;
        if matches!(self.tokens.get(look), Some((Token::EndOfLine, _))) {
            look += 1;
        }
        let block = if matches!(self.tokens.get(look), Some((Token::Open, _))) {
            self.next = look + 1;
            Some(self.block(Some(line))?)
        } else {
            None
        };
        Ok(Stmt { words, block, at })
    }

    /// `include PATTERN` becomes the statements of the files it matches.
    fn splice(&mut self, stmt: Stmt, into: &mut Vec<Stmt>) -> Result<(), SyntaxError> {
        if stmt.keyword() != "include" {
            into.push(stmt);
            return Ok(());
        }
        let [pattern] = stmt.args() else {
            return Err(SyntaxError {
                at: stmt.at,
                message: "`include` takes one file name or glob pattern".into(),
            });
        };
        let pattern = pattern.clone();
        if self.depth >= MAX_INCLUDE_DEPTH {
            return Err(SyntaxError {
                at: stmt.at,
                message: format!("includes nest deeper than {MAX_INCLUDE_DEPTH} files (a cycle?)"),
            });
        }
        let base = self.file.parent().unwrap_or(Path::new("."));
        let full: PathBuf = base.join(&pattern);
        let text = full.to_string_lossy().into_owned();
        let has_wildcards = pattern.contains(['*', '?', '[']);
        let matches: Vec<PathBuf> = glob::glob(&text)
            .map_err(|e| SyntaxError {
                at: stmt.at.clone(),
                message: format!("bad include pattern `{pattern}`: {e}"),
            })?
            .filter_map(Result::ok)
            .filter(|p| p.is_file())
            .collect();
        if matches.is_empty() {
            if has_wildcards {
                (self.warn)(stmt.at, format!("no files match `include {pattern}`"));
                return Ok(());
            }
            return Err(SyntaxError {
                at: stmt.at,
                message: format!("included file {} does not exist", full.display()),
            });
        }
        for path in matches {
            into.extend(read_file(&path, &stmt.at, self.depth + 1, self.warn)?);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<Stmt>, SyntaxError> {
        let file: Arc<Path> = Arc::from(Path::new("k.conf"));
        let tokens = tokenize(text, &file)?;
        let mut warn = |_: At, _: String| {};
        Parser {
            tokens,
            next: 0,
            file,
            depth: 0,
            warn: &mut warn,
        }
        .block(None)
    }

    fn words(stmts: &[Stmt]) -> Vec<Vec<&str>> {
        stmts
            .iter()
            .map(|s| s.words.iter().map(String::as_str).collect())
            .collect()
    }

    #[test]
    fn blocks_comments_quotes_and_lines() {
        let text = "! comment\nvirtual_server 10.0.0.1 80 {  # trailing\n  lb_algo rr\n  real_server 10.0.1.1 80\n  {\n    weight 2 ! set\n    MISC_CHECK { misc_path \"/bin/check 'a b'\" }\n  }\n}\nquorum_up \"/bin/echo  up\" \\\n  more O'Brien\n";
        let stmts = parse(text).unwrap();
        assert_eq!(
            words(&stmts),
            [
                vec!["virtual_server", "10.0.0.1", "80"],
                vec!["quorum_up", "/bin/echo  up", "more", "O'Brien"]
            ]
        );
        assert_eq!(stmts[0].at.line, 2);
        assert_eq!(stmts[1].at.line, 10);
        let vs = stmts[0].block.as_ref().unwrap();
        assert_eq!(
            words(vs),
            [vec!["lb_algo", "rr"], vec!["real_server", "10.0.1.1", "80"]]
        );
        let rs = vs[1].block.as_ref().unwrap();
        assert_eq!(rs[0].at.line, 6);
        assert_eq!(words(rs), [vec!["weight", "2"], vec!["MISC_CHECK"]]);
        let misc = rs[1].block.as_ref().unwrap();
        assert_eq!(words(misc), [vec!["misc_path", "/bin/check 'a b'"]]);
    }

    #[test]
    fn escapes_inside_quotes() {
        let stmts = parse(r#"send "a\r\n\x41\101\"q" x"#).unwrap();
        assert_eq!(stmts[0].words, ["send", "a\r\nAA\"q", "x"]);
    }

    #[test]
    fn unbalanced_braces_and_unsupported_syntax_name_their_line() {
        let e = parse("a {\n b\n").unwrap_err();
        assert_eq!(
            (e.at.line, e.message.as_str()),
            (1, "this block's `{` is never closed")
        );
        let e = parse("a\n}\n").unwrap_err();
        assert_eq!(e.at.line, 2);
        let e = parse("x\n@high priority 1\n").unwrap_err();
        assert_eq!(e.at.line, 2);
        assert!(e.message.contains("conditional"), "{}", e.message);
        let e = parse("a \"open\n").unwrap_err();
        assert_eq!(e.at.line, 1);
    }

    #[test]
    fn includes_splice_globs_relative_to_the_including_file() {
        let dir = std::env::temp_dir().join(format!("lvs-kconf-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("conf.d")).unwrap();
        std::fs::write(
            dir.join("main.conf"),
            "a 1\ninclude conf.d/*.conf\ninclude none/*.conf\nb {\n include conf.d/inner\n}\n",
        )
        .unwrap();
        std::fs::write(dir.join("conf.d/1.conf"), "c 1\n").unwrap();
        std::fs::write(dir.join("conf.d/2.conf"), "\nc 2\n").unwrap();
        std::fs::write(dir.join("conf.d/inner"), "d 1\n").unwrap();
        let mut warnings = Vec::new();
        let stmts = read(&dir.join("main.conf"), &mut |at, m| {
            warnings.push((at.line, m))
        })
        .unwrap();
        assert_eq!(
            words(&stmts),
            [vec!["a", "1"], vec!["c", "1"], vec!["c", "2"], vec!["b"]]
        );
        assert!(stmts[2].at.file.ends_with("conf.d/2.conf"));
        assert_eq!(stmts[2].at.line, 2);
        assert_eq!(words(stmts[3].block.as_ref().unwrap()), [vec!["d", "1"]]);
        assert_eq!(
            warnings,
            [(3, "no files match `include none/*.conf`".to_string())]
        );
        std::fs::write(dir.join("conf.d/inner"), "include ../main.conf\n").unwrap();
        let e = read(&dir.join("main.conf"), &mut |_, _| {}).unwrap_err();
        assert!(e.message.contains("nest deeper"), "{}", e.message);
        std::fs::write(dir.join("main.conf"), "include missing.conf\n").unwrap();
        let e = read(&dir.join("main.conf"), &mut |_, _| {}).unwrap_err();
        assert_eq!(e.at.line, 1);
        assert!(e.message.contains("does not exist"), "{}", e.message);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
