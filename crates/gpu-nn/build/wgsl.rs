//! The WGSL variants of one kernel file, made at build time (`build.rs`) and unit-tested with
//! the crate (`cargo test -p gpu-nn --lib`).
//!
//! A kernel file declares its read-only operands as textures, `var NAME: texture_2d<f32>;`,
//! and reads them only through `texel(NAME, e)` and `texel4(NAME, i)` (common.wgsl). That
//! file, as written, is the **texture variant** (CPU drivers that copy operands into
//! textures). The **buffer variant**, what every other device compiles, declares each
//! operand as `var<storage, read> NAME: array<vec4<f32>>` (the layout the textures copy) and
//! turns its reads into helpers that index that array. The rewrite works on WGSL tokens, so
//! comments, line breaks and spacing do not matter; a texture builtin called on an operand is
//! an error naming the line, and naga validates every variant in the tests.

/// One lexical piece of WGSL. Trivia (whitespace and comments) are kept verbatim, so the
/// output differs from the input only where it was rewritten.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Token<'a> {
    /// An identifier or keyword.
    Word(&'a str),
    /// A numeric literal.
    Number(&'a str),
    /// One punctuation character (`<`, `>`, `(`, `,` ...).
    Punct(char),
    /// Whitespace or a comment.
    Trivia(&'a str),
}

impl Token<'_> {
    fn text(&self) -> std::borrow::Cow<'_, str> {
        match self {
            Token::Word(s) | Token::Number(s) | Token::Trivia(s) => (*s).into(),
            Token::Punct(c) => c.to_string().into(),
        }
    }
}

/// Splits WGSL into tokens; line comments and (nested) block comments are trivia.
fn lex(src: &str) -> Result<Vec<Token<'_>>, String> {
    let b = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let start = i;
        let c = b[i];
        if c.is_ascii_whitespace() {
            while i < b.len() && b[i].is_ascii_whitespace() {
                i += 1;
            }
            out.push(Token::Trivia(&src[start..i]));
        } else if src[i..].starts_with("//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
            out.push(Token::Trivia(&src[start..i]));
        } else if src[i..].starts_with("/*") {
            let mut depth = 0usize;
            loop {
                if i >= b.len() {
                    return Err(format!(
                        "line {}: unclosed block comment",
                        line_of(src, start)
                    ));
                }
                if src[i..].starts_with("/*") {
                    depth += 1;
                    i += 2;
                } else if src[i..].starts_with("*/") {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            out.push(Token::Trivia(&src[start..i]));
        } else if c.is_ascii_alphabetic() || c == b'_' {
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            out.push(Token::Word(&src[start..i]));
        } else if c.is_ascii_digit() {
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'.' || b[i] == b'_') {
                i += 1;
            }
            out.push(Token::Number(&src[start..i]));
        } else {
            let ch = src[i..].chars().next().unwrap_or('\0');
            i += ch.len_utf8();
            out.push(Token::Punct(ch));
        }
    }
    Ok(out)
}

fn line_of(src: &str, byte: usize) -> usize {
    src[..byte].matches('\n').count() + 1
}

/// Indices of the non-trivia tokens, so patterns can skip whitespace and comments.
fn significant(tokens: &[Token<'_>]) -> Vec<usize> {
    (0..tokens.len())
        .filter(|&i| !matches!(tokens[i], Token::Trivia(_)))
        .collect()
}

/// Byte offset of token `t` in the source the tokens came from.
fn offset(tokens: &[Token<'_>], t: usize) -> usize {
    tokens[..t].iter().map(|t| t.text().len()).sum()
}

/// The operand declared by the significant tokens from `at`: `var NAME : texture_2d < f32 > ;`
/// gives `Some(NAME)`.
fn operand_decl<'a>(tokens: &[Token<'a>], sig: &[usize], at: usize) -> Option<&'a str> {
    let want = |k: usize, t: Token<'_>| sig.get(at + k).is_some_and(|&i| tokens[i] == t);
    let name = match sig.get(at + 1).map(|&i| tokens[i]) {
        Some(Token::Word(n)) => n,
        _ => return None,
    };
    let pattern = [
        Token::Punct(':'),
        Token::Word("texture_2d"),
        Token::Punct('<'),
        Token::Word("f32"),
        Token::Punct('>'),
        Token::Punct(';'),
    ];
    (want(0, Token::Word("var")) && pattern.iter().enumerate().all(|(k, t)| want(k + 2, *t)))
        .then_some(name)
}

/// The operands `source` declares as textures, in order.
pub fn operands(source: &str) -> Result<Vec<String>, String> {
    let tokens = lex(source)?;
    let sig = significant(&tokens);
    Ok((0..sig.len())
        .filter_map(|k| operand_decl(&tokens, &sig, k))
        .map(str::to_string)
        .collect())
}

/// The buffer variant of `source` (see the module docs). A file without operands comes back
/// unchanged.
pub fn buffer_variant(source: &str) -> Result<String, String> {
    let tokens = lex(source)?;
    let sig = significant(&tokens);
    let names: Vec<&str> = (0..sig.len())
        .filter_map(|k| operand_decl(&tokens, &sig, k))
        .collect();
    if names.is_empty() {
        return Ok(source.to_string());
    }
    // Replacement text by token index; `None` drops the token.
    let mut replace: Vec<Option<Option<String>>> = vec![None; tokens.len()];
    let mut k = 0;
    while k < sig.len() {
        if let Some(name) = operand_decl(&tokens, &sig, k) {
            // `var NAME : texture_2d < f32 > ;` is 8 significant tokens.
            replace[sig[k]] = Some(Some(format!(
                "var<storage, read> {name}: array<vec4<f32>>;"
            )));
            replace[sig[k] + 1..=sig[k + 7]].fill(Some(None));
            k += 8;
            continue;
        }
        let word = |j: usize| match sig.get(j).map(|&i| tokens[i]) {
            Some(Token::Word(w)) => Some(w),
            _ => None,
        };
        let punct = |j: usize, c: char| sig.get(j).is_some_and(|&i| tokens[i] == Token::Punct(c));
        match word(k) {
            // texel(NAME, ..) -> texel_NAME(..)
            Some(f @ ("texel" | "texel4"))
                if punct(k + 1, '(')
                    && word(k + 2).is_some_and(|n| names.contains(&n))
                    && punct(k + 3, ',') =>
            {
                let name = word(k + 2).unwrap_or_default();
                replace[sig[k]] = Some(Some(format!("{f}_{name}(")));
                replace[sig[k] + 1..=sig[k + 3]].fill(Some(None));
                // The space after the comma goes too: `texel_x(i)`, not `texel_x( i)`.
                let after = sig[k + 3] + 1;
                if matches!(tokens.get(after), Some(Token::Trivia(t)) if t.trim_matches(' ').is_empty())
                {
                    replace[after] = Some(None);
                }
                k += 4;
            }
            // A texture builtin on an operand: the buffer variant has no texture to give it.
            // (The name alone may be a local elsewhere; naga's validation of the variant
            // catches an operand passed on any other way.)
            Some(f)
                if f.starts_with("texture")
                    && punct(k + 1, '(')
                    && word(k + 2).is_some_and(|n| names.contains(&n)) =>
            {
                let n = word(k + 2).unwrap_or_default();
                return Err(format!(
                    "line {}: `{f}({n}, ..)` reads operand `{n}` other than through \
                     texel({n}, ..) or texel4({n}, ..), which the buffer variant cannot rewrite",
                    line_of(source, offset(&tokens, sig[k]))
                ));
            }
            _ => k += 1,
        }
    }
    let mut out = String::with_capacity(source.len() + 256 * names.len());
    for (t, r) in tokens.iter().zip(&replace) {
        match r {
            None => out.push_str(&t.text()),
            Some(Some(text)) => out.push_str(text),
            Some(None) => {}
        }
    }
    for n in names {
        out.push_str(&format!(
            "\nfn texel_{n}(e: u32) -> f32 {{ return {n}[e >> 2u][e & 3u]; }}\n\
             fn texel4_{n}(i: u32) -> vec4<f32> {{ return {n}[i]; }}\n"
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::{buffer_variant, operands};

    #[test]
    fn texture_operands_become_texel_buffers_and_their_reads_follow() {
        let src = "@group(0) @binding(1) var x: texture_2d<f32>; // gy\n\
                   @group(0) @binding(2)\n  var  y /* operand */ :\n texture_2d< f32 >;\n\
                   @group(0) @binding(3) var<storage, read_write> z: array<f32>;\n\
                   fn f(i: u32) -> f32 { return texel(x, i) + texel4( y ,\n (i + 1u)).w; }\n";
        assert_eq!(operands(src).expect("lexes"), ["x", "y"]);
        let out = buffer_variant(src).expect("rewrites");
        assert!(out.contains("@binding(1) var<storage, read> x: array<vec4<f32>>; // gy\n"));
        assert!(out.contains("@binding(2)\n  var<storage, read> y: array<vec4<f32>>;\n"));
        assert!(
            out.contains("return texel_x(i) + texel4_y(\n (i + 1u)).w;"),
            "{out}"
        );
        assert!(out.contains("fn texel_x(e: u32) -> f32 { return x[e >> 2u][e & 3u]; }"));
        assert!(out.contains("fn texel4_y(i: u32) -> vec4<f32> { return y[i]; }"));
        assert!(!out.contains("texture_2d"), "{out}");
    }

    #[test]
    fn a_file_without_operands_is_unchanged() {
        let plain = "// texel(x, 1) in a comment\nfn g() { let texel = 1u; }\n";
        assert_eq!(buffer_variant(plain).expect("rewrites"), plain);
        assert!(operands(plain).expect("lexes").is_empty());
    }

    #[test]
    fn an_operand_read_another_way_is_refused_with_its_line() {
        let src = "var x: texture_2d<f32>;\nfn f() -> vec4<f32> {\n return textureLoad(x, \
                   vec2<u32>(0u), 0);\n}\n";
        let e = buffer_variant(src).expect_err("textureLoad on an operand");
        assert!(
            e.contains("line 3") && e.contains("textureLoad(x, ..)"),
            "{e}"
        );
        let e = buffer_variant("/* open").expect_err("unclosed comment");
        assert!(e.contains("unclosed"), "{e}");
    }

    #[test]
    fn names_that_only_contain_an_operand_are_left_alone() {
        let src = "var x: texture_2d<f32>;\nfn f(xs: u32) -> f32 { return texel(x, xs) + \
                   f32(x_len); }\nfn g(x: u32) -> u32 { return x + 1u; }\n";
        let out = buffer_variant(src).expect("rewrites");
        assert!(out.contains("texel_x(xs) + f32(x_len)"), "{out}");
        // A parameter of the same name in another function is not the operand.
        assert!(
            out.contains("fn g(x: u32) -> u32 { return x + 1u; }"),
            "{out}"
        );
    }
}
