//! A linear pass over YAML text that follows libyaml's tokenizer just far enough
//! to know how deep the text nests, so that `limits` can refuse a document
//! before libyaml parses it (libyaml's work grows with the square of the flow
//! nesting).
//!
//! It follows libyaml's scanner (0.2.5, as transpiled in `unsafe-libyaml`) on
//! where tokens start and end: comments, quoted scalars (which may span lines),
//! plain scalars (which may too), block scalars, tags and anchors, so brackets
//! inside text are not counted. Depth is what libyaml's scanner holds: the open
//! flow collections plus its stack of block indentation levels (an indentless
//! sequence under a mapping key shares its parent's level, so the real block
//! depth is at most twice that). Where libyaml would stop with an error the pass
//! goes on; it may then report a document libyaml rejects anyway, but never
//! misses one libyaml would read deeper.

/// A place in the text: 1-based line and column (in characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

/// Where `text` first nests deeper than `limit`, if it does.
pub fn first_too_deep(text: &str, limit: usize) -> Option<Position> {
    Scanner::new(text, limit).run().err()
}

/// The length of the line break at `pos`, if there is one. libyaml breaks lines at
/// `\r\n`, `\r`, `\n`, NEL, LS and PS.
pub fn break_len(s: &[u8], pos: usize) -> Option<usize> {
    let rest = s.get(pos..)?;
    match rest {
        [b'\r', b'\n', ..] => Some(2),
        [b'\r' | b'\n', ..] => Some(1),
        [0xC2, 0x85, ..] => Some(2),
        [0xE2, 0x80, 0xA8 | 0xA9, ..] => Some(3),
        _ => None,
    }
}

/// Whether a `---` or `...` document marker starts at `pos` (which must be at a
/// line start to count as one).
pub fn is_document_marker(s: &[u8], pos: usize) -> bool {
    let Some(rest) = s.get(pos..) else {
        return false;
    };
    (rest.starts_with(b"---") || rest.starts_with(b"...")) && is_blankz(s, pos + 3)
}

/// What an anchor or alias name is made of (libyaml's `IS_ALPHA`).
fn is_anchor_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'-'
}

/// `,[]{}`: they end a plain scalar inside a flow collection.
fn is_flow_indicator(c: u8) -> bool {
    matches!(c, b',' | b'[' | b']' | b'{' | b'}')
}

/// A space, a tab, a line break or the end.
fn is_blankz(s: &[u8], pos: usize) -> bool {
    matches!(s.get(pos), None | Some(b' ' | b'\t')) || break_len(s, pos).is_some()
}

struct Scanner<'a> {
    s: &'a [u8],
    pos: usize,
    /// 1-based.
    line: usize,
    /// 0-based, in characters (as libyaml counts).
    column: usize,
    /// Open flow collections (`[`, `{`).
    flow: usize,
    /// libyaml's block indentation stack: the columns of the open block
    /// collections (the document level, -1, is not on it).
    indents: Vec<usize>,
    /// libyaml's `simple_key_allowed`: a token here may be an implicit key.
    key_allowed: bool,
    /// The column and line of a token at flow level 0 that may be an implicit
    /// key: a `:` after it on the same line opens a block mapping at its column.
    block_key: Option<(usize, usize)>,
    /// The deepest nesting allowed.
    limit: usize,
}

impl<'a> Scanner<'a> {
    fn new(text: &'a str, limit: usize) -> Self {
        let s = text.as_bytes();
        // The reader drops a byte order mark at the start of the stream.
        let bom = "\u{feff}".as_bytes();
        let pos = if s.starts_with(bom) { bom.len() } else { 0 };
        Scanner {
            s,
            pos,
            line: 1,
            column: 0,
            flow: 0,
            indents: Vec::new(),
            key_allowed: true,
            block_key: None,
            limit,
        }
    }

    fn run(mut self) -> Result<(), Position> {
        loop {
            self.skip_to_next_token();
            let Some(&c) = self.s.get(self.pos) else {
                return Ok(());
            };
            // A possible key does not survive a line break.
            if self.block_key.is_some_and(|(_, line)| line < self.line) {
                self.block_key = None;
            }
            self.unroll(self.column as isize);
            if self.column == 0 && c == b'%' {
                self.end_of_document();
                self.skip_line();
                continue;
            }
            if self.column == 0 && is_document_marker(self.s, self.pos) {
                self.end_of_document();
                self.advance(3);
                continue;
            }
            match c {
                b'[' | b'{' => {
                    self.save_key();
                    self.flow += 1;
                    self.key_allowed = true;
                    self.check_depth()?;
                    self.advance(1);
                }
                b']' | b'}' => {
                    if self.flow == 0 {
                        self.block_key = None;
                    }
                    self.flow = self.flow.saturating_sub(1);
                    self.key_allowed = false;
                    self.advance(1);
                }
                b',' => {
                    if self.flow == 0 {
                        self.block_key = None;
                    }
                    self.key_allowed = true;
                    self.advance(1);
                }
                b'-' if is_blankz(self.s, self.pos + 1) => {
                    if self.flow == 0 {
                        self.roll(self.column)?;
                        self.block_key = None;
                    }
                    self.key_allowed = true;
                    self.advance(1);
                }
                b'?' if self.flow > 0 || is_blankz(self.s, self.pos + 1) => {
                    if self.flow == 0 {
                        self.roll(self.column)?;
                        self.block_key = None;
                    }
                    self.key_allowed = self.flow == 0;
                    self.advance(1);
                }
                b':' if self.flow > 0 || is_blankz(self.s, self.pos + 1) => {
                    if self.flow == 0 {
                        match self.block_key.take() {
                            Some((column, _)) => {
                                self.roll(column)?;
                                self.key_allowed = false;
                            }
                            None => {
                                self.roll(self.column)?;
                                self.key_allowed = true;
                            }
                        }
                    } else {
                        self.key_allowed = false;
                    }
                    self.advance(1);
                }
                b'*' | b'&' => {
                    self.save_key();
                    self.key_allowed = false;
                    self.advance(1);
                    while self.peek(0).is_some_and(is_anchor_char) {
                        self.advance(1);
                    }
                }
                b'!' => {
                    self.save_key();
                    self.key_allowed = false;
                    self.tag();
                }
                b'|' | b'>' if self.flow == 0 => {
                    self.block_key = None;
                    self.key_allowed = true;
                    self.block_scalar();
                }
                b'\'' | b'"' => {
                    self.save_key();
                    self.key_allowed = false;
                    self.quoted(c);
                }
                b'|' | b'>' | b'#' | b'%' | b'@' | b'`' | b'\t' | b' ' => {
                    // libyaml: "found character that cannot start any token"; it
                    // stops here, so may we.
                    return Ok(());
                }
                _ => {
                    self.save_key();
                    self.key_allowed = false;
                    self.plain();
                }
            }
        }
    }

    fn peek(&self, ahead: usize) -> Option<u8> {
        self.s.get(self.pos + ahead).copied()
    }

    /// Moves over `n` bytes on the current line; the column counts characters.
    fn advance(&mut self, n: usize) {
        for _ in 0..n {
            let Some(&b) = self.s.get(self.pos) else {
                return;
            };
            self.pos += 1;
            // UTF-8 continuation bytes are part of the previous character.
            if b & 0xC0 != 0x80 {
                self.column += 1;
            }
        }
    }

    /// Moves over a line break if there is one here.
    fn take_break(&mut self) -> bool {
        match break_len(self.s, self.pos) {
            Some(n) => {
                self.pos += n;
                self.line += 1;
                self.column = 0;
                true
            }
            None => false,
        }
    }

    fn at_break_or_end(&self) -> bool {
        self.pos >= self.s.len() || break_len(self.s, self.pos).is_some()
    }

    fn at_blank(&self) -> bool {
        matches!(self.peek(0), Some(b' ' | b'\t'))
    }

    fn skip_line(&mut self) {
        while !self.at_break_or_end() {
            self.advance(1);
        }
    }

    /// Spaces, tabs, comments and line breaks (libyaml's `scan_to_next_token`).
    fn skip_to_next_token(&mut self) {
        loop {
            if self.column == 0 && self.s[self.pos..].starts_with("\u{feff}".as_bytes()) {
                self.advance(3);
            }
            while self.at_blank() {
                self.advance(1);
            }
            if self.peek(0) == Some(b'#') {
                self.skip_line();
            }
            if !self.take_break() {
                return;
            }
            if self.flow == 0 {
                self.key_allowed = true;
            }
        }
    }

    /// `---`, `...` and directives close every block collection.
    fn end_of_document(&mut self) {
        self.unroll(-1);
        self.block_key = None;
        self.key_allowed = false;
    }

    fn parent_indent(&self) -> isize {
        self.indents.last().map_or(-1, |&c| c as isize)
    }

    /// A token that may be an implicit key: remembered if keys are allowed here.
    fn save_key(&mut self) {
        if self.flow == 0 && self.key_allowed {
            self.block_key = Some((self.column, self.line));
        }
    }

    /// A block collection opens at `column` if it is deeper than the current one.
    fn roll(&mut self, column: usize) -> Result<(), Position> {
        if self.flow == 0 && self.parent_indent() < column as isize {
            self.indents.push(column);
            self.check_depth()?;
        }
        Ok(())
    }

    /// Block collections deeper than `column` are closed.
    fn unroll(&mut self, column: isize) {
        if self.flow > 0 {
            return;
        }
        while self.parent_indent() > column {
            self.indents.pop();
        }
    }

    fn check_depth(&self) -> Result<(), Position> {
        if self.indents.len() + self.flow > self.limit {
            return Err(Position {
                line: self.line,
                column: self.column + 1,
            });
        }
        Ok(())
    }

    /// `!tag`, `!!str`, `!<verbatim>`: a tag ends at a blank (or, in a flow
    /// collection, a `,`), else libyaml stops with an error.
    fn tag(&mut self) {
        if self.peek(1) == Some(b'<') {
            self.advance(2);
            while let Some(c) = self.peek(0) {
                if c == b'>' || is_blankz(self.s, self.pos) {
                    break;
                }
                self.advance(1);
            }
            self.advance(usize::from(self.peek(0) == Some(b'>')));
            return;
        }
        while !is_blankz(self.s, self.pos) && (self.flow == 0 || self.peek(0) != Some(b',')) {
            self.advance(1);
        }
    }

    /// A single- or double-quoted scalar, which may span lines. It ends at the
    /// closing quote (`''` is a quote inside single quotes, `\` escapes inside
    /// double ones); a document marker or the end inside it is a libyaml error.
    fn quoted(&mut self, quote: u8) {
        self.advance(1);
        loop {
            if self.column == 0 && is_document_marker(self.s, self.pos) {
                return;
            }
            let Some(c) = self.peek(0) else {
                return;
            };
            if c == quote {
                if quote == b'\'' && self.peek(1) == Some(b'\'') {
                    self.advance(2);
                    continue;
                }
                self.advance(1);
                return;
            }
            if quote == b'"' && c == b'\\' {
                self.advance(1);
                if !self.take_break() {
                    // The escaped character (its hex digits, if any, are read as
                    // ordinary characters: none of them can end the scalar).
                    self.advance_char();
                }
                continue;
            }
            if !self.take_break() {
                self.advance(1);
            }
        }
    }

    /// Moves over one whole character.
    fn advance_char(&mut self) {
        self.advance(1);
        while self.peek(0).is_some_and(|b| b & 0xC0 == 0x80) {
            self.pos += 1;
        }
    }

    /// A plain scalar (libyaml's `scan_plain_scalar`): in a flow collection it
    /// ends at `,[]{}`; it ends at `: ` and ` #`; in block context it goes on
    /// over lines indented deeper than the collection it is in.
    fn plain(&mut self) {
        let indent = self.parent_indent() + 1;
        let mut crossed_line = false;
        loop {
            if self.column == 0 && is_document_marker(self.s, self.pos) {
                break;
            }
            if self.peek(0) == Some(b'#') {
                break;
            }
            while !is_blankz(self.s, self.pos) {
                let c = self.s[self.pos];
                let in_flow = self.flow > 0;
                let value_indicator = c == b':' && is_blankz(self.s, self.pos + 1);
                // In a flow collection libyaml stops with "found unexpected ':'"
                // at a `:` before `?` or a flow indicator.
                let next = self.peek(1);
                let bad_colon =
                    in_flow && c == b':' && next.is_some_and(|n| n == b'?' || is_flow_indicator(n));
                if value_indicator || (in_flow && is_flow_indicator(c)) || bad_colon {
                    break;
                }
                self.advance(1);
            }
            if !self.at_blank() && break_len(self.s, self.pos).is_none() {
                break;
            }
            loop {
                if self.at_blank() {
                    self.advance(1);
                } else if self.take_break() {
                    crossed_line = true;
                } else {
                    break;
                }
            }
            if self.flow == 0 && (self.column as isize) < indent {
                break;
            }
        }
        if crossed_line {
            self.key_allowed = true;
        }
    }

    /// A literal (`|`) or folded (`>`) block scalar: its header, then every
    /// line indented at least as deep as its first line (libyaml's
    /// `scan_block_scalar`).
    fn block_scalar(&mut self) {
        let parent = self.parent_indent();
        self.advance(1);
        let mut increment: isize = 0;
        match self.peek(0) {
            Some(b'+' | b'-') => {
                self.advance(1);
                if let Some(d @ b'1'..=b'9') = self.peek(0) {
                    increment = isize::from(d - b'0');
                    self.advance(1);
                }
            }
            Some(d @ b'1'..=b'9') => {
                increment = isize::from(d - b'0');
                self.advance(1);
                if matches!(self.peek(0), Some(b'+' | b'-')) {
                    self.advance(1);
                }
            }
            _ => {}
        }
        while self.at_blank() {
            self.advance(1);
        }
        if self.peek(0) == Some(b'#') {
            self.skip_line();
        }
        if !self.at_break_or_end() {
            // libyaml: "did not find expected comment or line break".
            return;
        }
        self.take_break();
        let mut indent: isize = match increment {
            0 => 0,
            n if parent >= 0 => parent + n,
            n => n,
        };
        self.block_breaks(&mut indent, parent);
        while self.column as isize == indent && self.pos < self.s.len() {
            self.skip_line();
            self.take_break();
            self.block_breaks(&mut indent, parent);
        }
    }

    /// Empty lines and indentation inside a block scalar; settles the scalar's
    /// indentation from its first non-empty line when the header did not give it.
    fn block_breaks(&mut self, indent: &mut isize, parent: isize) {
        let mut max_indent: isize = 0;
        loop {
            while (*indent == 0 || (self.column as isize) < *indent) && self.peek(0) == Some(b' ') {
                self.advance(1);
            }
            max_indent = max_indent.max(self.column as isize);
            if !self.take_break() {
                break;
            }
        }
        if *indent == 0 {
            *indent = max_indent.max(parent + 1).max(1);
        }
    }
}

#[cfg(test)]
mod tests;
