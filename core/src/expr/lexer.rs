//! Splits an expression into tokens, tracking the 1-based character column of each.
//!
//! The lexer knows nothing about keywords: `and`, `in`, `has` … are plain [`TokenKind::Word`]s and the
//! parser decides from context what they mean. A character that cannot start any token becomes
//! [`TokenKind::Invalid`] so that the parser can say what it expected there.

use super::ParseError;

/// The six words the parser gives a meaning to.
pub(super) const KEYWORDS: [&str; 6] = ["and", "or", "not", "in", "notin", "has"];

/// Keywords that are never a bare label key (`has` is a key unless `(` follows it).
pub(super) fn is_reserved(word: &str) -> bool {
    matches!(word, "and" | "or" | "not" | "in" | "notin")
}

/// Characters of a bare word: everything a label key or value may contain.
pub(super) fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/')
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TokenKind<'a> {
    LParen,
    RParen,
    Comma,
    /// `=`
    Eq,
    /// `==`
    EqEq,
    /// `!=`
    NotEq,
    /// `!`
    Bang,
    /// `&&`
    AndAnd,
    /// `||`
    OrOr,
    /// A run of [`is_word_char`] characters: a key, a value or a keyword.
    Word(&'a str),
    /// The text between matching quotes (no escapes: label keys and values never need them).
    Quoted {
        text: &'a str,
        quote: char,
    },
    /// A character no token starts with.
    Invalid(char),
    End,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Token<'a> {
    pub(super) kind: TokenKind<'a>,
    /// 1-based column, in characters, of the token's first character.
    pub(super) column: usize,
}

impl TokenKind<'_> {
    /// How an error message names this token after "found".
    pub(super) fn describe(&self) -> String {
        match *self {
            TokenKind::LParen => "'('".to_owned(),
            TokenKind::RParen => "')'".to_owned(),
            TokenKind::Comma => "','".to_owned(),
            TokenKind::Eq => "'='".to_owned(),
            TokenKind::EqEq => "'=='".to_owned(),
            TokenKind::NotEq => "'!='".to_owned(),
            TokenKind::Bang => "'!'".to_owned(),
            TokenKind::AndAnd => "'&&'".to_owned(),
            TokenKind::OrOr => "'||'".to_owned(),
            TokenKind::Word(word) if KEYWORDS.contains(&word) => format!("keyword '{word}'"),
            TokenKind::Word(word) => {
                let lower = word.to_ascii_lowercase();
                if KEYWORDS.contains(&lower.as_str()) {
                    format!("'{word}' (keywords are lowercase: '{lower}')")
                } else {
                    format!("'{}'", snippet(word))
                }
            }
            TokenKind::Quoted { text, quote } => format!("quoted string {quote}{}{quote}", snippet(text)),
            TokenKind::Invalid('&') => "'&' (write 'and' or '&&')".to_owned(),
            TokenKind::Invalid('|') => "'|' (write 'or' or '||')".to_owned(),
            TokenKind::Invalid(c) => format!("character '{}'", c.escape_debug()),
            TokenKind::End => "end of input".to_owned(),
        }
    }
}

/// Shortens long user text quoted in error messages.
pub(super) fn snippet(text: &str) -> String {
    const MAX: usize = 40;
    if text.chars().count() <= MAX {
        text.to_owned()
    } else {
        let head: String = text.chars().take(MAX).collect();
        format!("{head}...")
    }
}

pub(super) struct Lexer<'a> {
    input: &'a str,
    /// Byte offset of the next character.
    pos: usize,
    /// Column of the next character.
    column: usize,
}

impl<'a> Lexer<'a> {
    pub(super) fn new(input: &'a str) -> Self {
        Self {
            input,
            pos: 0,
            column: 1,
        }
    }

    fn peek_char(&self) -> Option<char> {
        self.input[self.pos..].chars().next()
    }

    fn bump(&mut self) {
        if let Some(c) = self.peek_char() {
            self.pos += c.len_utf8();
            self.column += 1;
        }
    }

    fn eat(&mut self, expected: char) -> bool {
        let found = self.peek_char() == Some(expected);
        if found {
            self.bump();
        }
        found
    }

    pub(super) fn next_token(&mut self) -> Result<Token<'a>, ParseError> {
        while self.peek_char().is_some_and(char::is_whitespace) {
            self.bump();
        }
        let column = self.column;
        let Some(c) = self.peek_char() else {
            // Point just past the last visible character, not past trailing newlines.
            let column = self.input.trim_end().chars().count() + 1;
            return Ok(Token {
                kind: TokenKind::End,
                column,
            });
        };
        self.bump();
        let kind = match c {
            '(' => TokenKind::LParen,
            ')' => TokenKind::RParen,
            ',' => TokenKind::Comma,
            '=' if self.eat('=') => TokenKind::EqEq,
            '=' => TokenKind::Eq,
            '!' if self.eat('=') => TokenKind::NotEq,
            '!' => TokenKind::Bang,
            '&' if self.eat('&') => TokenKind::AndAnd,
            '|' if self.eat('|') => TokenKind::OrOr,
            '\'' | '"' => self.quoted(c, column)?,
            c if is_word_char(c) => {
                let start = self.pos - c.len_utf8();
                while self.peek_char().is_some_and(is_word_char) {
                    self.bump();
                }
                TokenKind::Word(&self.input[start..self.pos])
            }
            c => TokenKind::Invalid(c),
        };
        Ok(Token { kind, column })
    }

    /// Lexes the rest of a quoted string whose opening `quote` (at `column`) was just consumed.
    fn quoted(&mut self, quote: char, column: usize) -> Result<TokenKind<'a>, ParseError> {
        let start = self.pos;
        loop {
            match self.peek_char() {
                Some(c) if c == quote => {
                    let text = &self.input[start..self.pos];
                    self.bump();
                    return Ok(TokenKind::Quoted { text, quote });
                }
                Some(_) => self.bump(),
                None => {
                    return Err(ParseError::new(
                        column,
                        format!(
                            "expected a closing {quote} to end the quoted string that starts here, found end of input"
                        ),
                    ));
                }
            }
        }
    }
}
