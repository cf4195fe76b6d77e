/*
** strip.c — see strip.h. Removes Luau-style type annotations (wippy-compat.md §3.0, §10.3).
**
** Design: a Lua-aware tokenizer (strings, long brackets, comments, numbers, names,
** punctuation) feeds a light parser that only acts where an annotation can occur:
**   - after the names of a `local` or `for` name list        (`local x: T = ...`)
**   - inside a function's parameter list                      (`function f(a: T, ...: U)`)
**   - after the `)` closing a function's parameter list       (`function f(): T`)
**   - after a function name / `function` keyword              (`function f<T>(...)`)
**   - a statement-start `type` / `export type` alias          (`type N<T> = ...`)
**   - casts after an expression                               (`x :: T`, `x as T`, `x!`)
** None of these positions can hold valid Lua 5.4, so plain Lua passes through unchanged.
** Once an annotation has begun, a recursive "skip one type expression" routine finds its
** end; the annotation's bytes are then overwritten with spaces (newlines kept).
** Everything is bounds-checked against `len`: the input need not be NUL-terminated.
*/
#include "strip.h"
#include "base/util.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DEPTH 200 /* type nesting limit: keeps hostile input from exhausting the stack */

enum tkind { T_EOF, T_NAME, T_NUM, T_STR, T_PUNCT, T_BOF, T_ANN };

/* A token: kind, byte range [pos, pos+len) in the source and the line it starts on.
** T_BOF and T_ANN are synthetic "previous token" markers (start of input, end of a
** stripped annotation); the lexer never produces them. */
struct tok {
  enum tkind kind;
  size_t pos, len;
  int line;
};

struct lexer {
  const char *s;
  size_t n, pos;
  int line;
};

struct parser {
  struct lexer lx;     /* positioned just after `tok` */
  struct tok tok;      /* current (not yet consumed) token */
  struct tok prev;     /* last consumed token */
  char *out;           /* copy of the source being blanked */
  int depth;
  char *err;
  size_t errlen;
};

/* ---- lexer ------------------------------------------------------------- */

/* The byte at i, or NUL past the end (only for lookahead; loops test bounds). */
static int at(const struct lexer *lx, size_t i) { return i < lx->n ? (unsigned char)lx->s[i] : 0; }

static int is_nl(int c) { return c == '\n' || c == '\r'; }

/* Consumes one line break ("\n", "\r", "\r\n" or "\n\r", as Lua counts them). */
static void newline(struct lexer *lx) {
  int c = at(lx, lx->pos++);
  if (is_nl(at(lx, lx->pos)) && at(lx, lx->pos) != c) lx->pos++;
  lx->line++;
}

/* If a long bracket `[=*[` starts at pos, returns its level (number of '='), else -1. */
static int long_level(const struct lexer *lx, size_t pos) {
  if (at(lx, pos) != '[') return -1;
  size_t i = pos + 1;
  while (at(lx, i) == '=') i++;
  return at(lx, i) == '[' ? (int)(i - pos - 1) : -1;
}

/* Skips a long bracket body after its opener up to and including `]=*]`, or to EOF. */
static void skip_long(struct lexer *lx, int level) {
  lx->pos += (size_t)level + 2;
  while (lx->pos < lx->n) {
    if (is_nl(at(lx, lx->pos))) { newline(lx); continue; }
    if (at(lx, lx->pos++) != ']') continue;
    size_t i = lx->pos;
    while (at(lx, i) == '=') i++;
    if (at(lx, i) == ']' && (int)(i - lx->pos) == level) { lx->pos = i + 1; return; }
  }
}

/* Skips whitespace and comments (and a leading "#" line, as lua.c does). */
static void skip_space(struct lexer *lx) {
  if (lx->pos == 0 && at(lx, 0) == '#')
    while (lx->pos < lx->n && !is_nl(at(lx, lx->pos))) lx->pos++;
  while (lx->pos < lx->n) {
    int c = at(lx, lx->pos);
    if (is_nl(c)) newline(lx);
    else if (c == ' ' || c == '\t' || c == '\f' || c == '\v') lx->pos++;
    else if (c == '-' && at(lx, lx->pos + 1) == '-') {
      lx->pos += 2;
      int level = long_level(lx, lx->pos);
      if (level >= 0) skip_long(lx, level);
      else while (lx->pos < lx->n && !is_nl(at(lx, lx->pos))) lx->pos++;
    } else return;
  }
}

/* Skips a quoted string body after its opening quote. An unfinished string ends at the
** line break or EOF; Lua itself reports it later, so no error here. */
static void skip_string(struct lexer *lx, int quote) {
  while (lx->pos < lx->n) {
    int c = at(lx, lx->pos);
    if (c == quote) { lx->pos++; return; }
    if (is_nl(c)) return;
    lx->pos++;
    if (c != '\\' || lx->pos >= lx->n) continue;
    c = at(lx, lx->pos);
    if (is_nl(c)) newline(lx);
    else if (c == 'z') {
      lx->pos++;
      while (lx->pos < lx->n && isspace(at(lx, lx->pos)))
        if (is_nl(at(lx, lx->pos))) newline(lx); else lx->pos++;
    } else lx->pos++;
  }
}

/* Skips a numeral (decimal or hex, with exponents); precision does not matter here. */
static void skip_number(struct lexer *lx) {
  int hex = at(lx, lx->pos) == '0' && (at(lx, lx->pos + 1) | 0x20) == 'x';
  while (lx->pos < lx->n) {
    int c = at(lx, lx->pos), e = c | 0x20, sign = at(lx, lx->pos + 1);
    if ((e == (hex ? 'p' : 'e')) && (sign == '+' || sign == '-')) lx->pos += 2;
    else if (isalnum(c) || c == '.' || c == '_') lx->pos++;
    else return;
  }
}

static int name_start(int c) { return isalpha(c) || c == '_'; }

/* Length of the punctuation token at pos: the multi-byte ones the parser cares about,
** else 1. `<` and `>` stay single so `Map<K, Array<V>>` closes correctly. */
static size_t punct_len(const struct lexer *lx) {
  static const char *multi[] = {"...", "..", "::", "->", "==", "~=", "//"};
  for (size_t i = 0; i < countof(multi); i++) {
    size_t k = strlen(multi[i]);
    if (lx->pos + k <= lx->n && memcmp(lx->s + lx->pos, multi[i], k) == 0) return k;
  }
  return 1;
}

/* Reads the next token into *t. */
static void lex(struct lexer *lx, struct tok *t) {
  skip_space(lx);
  t->pos = lx->pos;
  t->line = lx->line;
  int c = at(lx, lx->pos), level = long_level(lx, lx->pos);
  if (lx->pos >= lx->n) t->kind = T_EOF;
  else if (c == '"' || c == '\'') { t->kind = T_STR; lx->pos++; skip_string(lx, c); }
  else if (level >= 0) { t->kind = T_STR; skip_long(lx, level); }
  else if (isdigit(c) || (c == '.' && isdigit(at(lx, lx->pos + 1)))) {
    t->kind = T_NUM; skip_number(lx);
  } else if (name_start(c)) {
    t->kind = T_NAME;
    while (lx->pos < lx->n && (isalnum(at(lx, lx->pos)) || at(lx, lx->pos) == '_')) lx->pos++;
  } else { t->kind = T_PUNCT; lx->pos += punct_len(lx); }
  t->len = lx->pos - t->pos;
}

/* ---- token helpers ----------------------------------------------------- */

/* Does token t (a name or punctuation) spell exactly s? */
static int is(const struct parser *P, const struct tok *t, const char *s) {
  size_t k = strlen(s);
  return (t->kind == T_NAME || t->kind == T_PUNCT) && t->len == k &&
         memcmp(P->lx.s + t->pos, s, k) == 0;
}

static int is_keyword(const struct parser *P, const struct tok *t) {
  static const char *kw[] = {"and", "break", "do", "else", "elseif", "end", "false", "for",
    "function", "goto", "if", "in", "local", "nil", "not", "or", "repeat", "return", "then",
    "true", "until", "while"};
  for (size_t i = 0; i < countof(kw); i++)
    if (is(P, t, kw[i])) return 1;
  return 0;
}

/* A name usable as an identifier (not a reserved word). */
static int is_ident(const struct parser *P, const struct tok *t) {
  return t->kind == T_NAME && !is_keyword(P, t);
}

static int is_any(const struct parser *P, const struct tok *t, const char *const *set) {
  for (; *set; set++)
    if (is(P, t, *set)) return 1;
  return 0;
}

/* Can an expression end with token t? (then `::`, `as`, `!` after it are casts) */
static int ends_expr(const struct parser *P, const struct tok *t) {
  static const char *const ok[] = {")", "]", "}", "...", "nil", "true", "false", "end", NULL};
  return t->kind == T_NUM || t->kind == T_STR || t->kind == T_ANN || is_ident(P, t) ||
         is_any(P, t, ok);
}

/* Can a new statement begin right after token t? (so `type` there starts an alias) */
static int ends_stmt(const struct parser *P, const struct tok *t) {
  static const char *const ok[] = {";", "::", "do", "then", "else", "repeat", "break", NULL};
  return t->kind == T_BOF || ends_expr(P, t) || is_any(P, t, ok);
}

/* ---- parser primitives ------------------------------------------------- */

static void advance(struct parser *P) { P->prev = P->tok; lex(&P->lx, &P->tok); }

/* The n-th token after the current one (n >= 1), without consuming anything. */
static struct tok peek(const struct parser *P, int n) {
  struct lexer lx = P->lx;
  struct tok t = P->tok;
  while (n-- > 0 && t.kind != T_EOF) lex(&lx, &t);
  return t;
}

static int check(const struct parser *P, const char *s) { return is(P, &P->tok, s); }

static int accept(struct parser *P, const char *s) {
  if (!check(P, s)) return 0;
  advance(P);
  return 1;
}

/* Records "line N: <message> near '<token>'" and returns -1. */
static int fail(struct parser *P, const char *fmt, ...) {
  char msg[160], near[32];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  size_t k = 0;
  while (k < P->tok.len && k < 24 && !is_nl(at(&P->lx, P->tok.pos + k))) k++;
  if (P->tok.kind == T_EOF) snprintf(near, sizeof near, "<eof>");
  else snprintf(near, sizeof near, "'%.*s'", (int)k, P->lx.s + P->tok.pos);
  if (P->err && P->errlen) snprintf(P->err, P->errlen, "line %d: %s near %s", P->tok.line, msg, near);
  return -1;
}

static int expect(struct parser *P, const char *s, const char *ctx) {
  return accept(P, s) ? 0 : fail(P, "'%s' expected %s", s, ctx);
}

/* Blanks [from, end of the last consumed token) and marks the previous token as the end
** of an annotation. Line breaks survive, so line numbers do not move. */
static void strip_from(struct parser *P, size_t from) {
  for (size_t i = from; i < P->prev.pos + P->prev.len; i++)
    if (!is_nl(P->out[i])) P->out[i] = ' ';
  P->prev.kind = T_ANN;
}

/* ---- type expressions -------------------------------------------------- */
/* Each routine consumes one construct starting at the current token; 0 or -1 (err set). */

static int type_expr(struct parser *P);

/* Comma-separated type list up to `close`, the opener (on `line`) already consumed. When
** `named`, items may be `name: T` (function-type parameters). */
static int type_list(struct parser *P, const char *close, int named, int line) {
  while (!check(P, close) && P->tok.kind != T_EOF) {
    struct tok t1 = peek(P, 1);
    if (named && P->tok.kind == T_NAME && is(P, &t1, ":")) { advance(P); advance(P); }
    if (type_expr(P)) return -1;
    if (!accept(P, ",")) break;
  }
  return accept(P, close) ? 0 : fail(P, "'%s' expected (to close '%c' at line %d)", close,
                                         *close == ')' ? '(' : '<', line);
}

/* `<T, U..., V = default>` after a function or alias name. */
static int generic_params(struct parser *P) {
  int line = P->tok.line;
  advance(P);
  do {
    if (!is_ident(P, &P->tok)) return fail(P, "generic parameter name expected");
    advance(P);
    accept(P, "...");
    if (accept(P, "=") && type_expr(P)) return -1;
  } while (accept(P, ","));
  return accept(P, ">") ? 0 : fail(P, "'>' expected (to close '<' at line %d)", line);
}

/* One table-type field: `[K]: V`, `[read|write] name[?]: T`, or an array item type. */
static int table_field(struct parser *P) {
  struct tok t1 = peek(P, 1), t2 = peek(P, 2);
  if (accept(P, "[")) {
    if (type_expr(P) || expect(P, "]", "after indexer key type") ||
        expect(P, ":", "after indexer")) return -1;
    return type_expr(P);
  }
  if ((check(P, "read") || check(P, "write")) && t1.kind == T_NAME) {
    advance(P);
    t1 = t2;
    t2 = peek(P, 2);
  }
  if (P->tok.kind == T_NAME && (is(P, &t1, ":") || (is(P, &t1, "?") && is(P, &t2, ":")))) {
    advance(P);
    accept(P, "?");
    advance(P);
  }
  return type_expr(P);
}

/* `{ field, field; ... }` — fields separated by `,` or `;`, trailing separator allowed. */
static int table_type(struct parser *P) {
  int line = P->tok.line;
  advance(P);
  while (!check(P, "}") && P->tok.kind != T_EOF) {
    if (table_field(P)) return -1;
    if (!accept(P, ",") && !accept(P, ";")) break;
  }
  return accept(P, "}") ? 0 : fail(P, "'}' expected (to close '{' at line %d)", line);
}

/* `( ... )` — a parenthesised type, a type pack, or function parameters (then `-> R`). */
static int paren_type(struct parser *P) {
  int line = P->tok.line;
  advance(P);
  if (type_list(P, ")", 1, line)) return -1;
  return accept(P, "->") ? type_expr(P) : 0;
}

/* `typeof(expr)` at its `(`: skips the balanced parenthesised Lua expression. */
static int typeof_type(struct parser *P) {
  int line = P->tok.line, depth = 0;
  do {
    if (P->tok.kind == T_EOF) return fail(P, "')' expected (to close typeof at line %d)", line);
    depth += check(P, "(") - check(P, ")");
    advance(P);
  } while (depth > 0);
  return 0;
}

/* `Name`, `mod.Name`, optionally with generic arguments `<A, B>`, or a pack `T...`. */
static int named_type(struct parser *P) {
  advance(P);
  while (check(P, ".") && peek(P, 1).kind == T_NAME) {
    advance(P);
    advance(P);
  }
  if (accept(P, "...")) return 0;                    /* generic pack `T...` */
  if (!check(P, "<")) return 0;
  int line = P->tok.line;
  advance(P);
  return type_list(P, ">", 0, line);
}

/* One primary type without suffixes, possibly variadic (`...T`). */
static int primary_type(struct parser *P) {
  while (accept(P, "...")) {}
  struct tok t = P->tok, t1 = peek(P, 1);
  if (is(P, &t, "typeof") && is(P, &t1, "(")) { advance(P); return typeof_type(P); }
  if (is(P, &t, "nil") || is(P, &t, "true") || is(P, &t, "false") || t.kind == T_STR) {
    advance(P);
    return 0;
  }
  if (is_ident(P, &t)) return named_type(P);
  if (is(P, &t, "{")) return table_type(P);
  if (is(P, &t, "(")) return paren_type(P);
  if (is(P, &t, "<")) {                               /* generic function type */
    if (generic_params(P)) return -1;
    if (!check(P, "(")) return fail(P, "'(' expected after generic parameters");
    return paren_type(P);
  }
  return fail(P, "type expected");
}

/* A full type: primaries with `?` suffixes joined by `|` / `&` (a leading one allowed). */
static int type_expr(struct parser *P) {
  if (++P->depth > MAX_DEPTH) return fail(P, "type nested too deeply");
  if (!accept(P, "|")) accept(P, "&");
  do {
    if (primary_type(P)) return -1;
    while (accept(P, "?")) {}
  } while (accept(P, "|") || accept(P, "&"));
  P->depth--;
  return 0;
}

/* `: T` at the current token: consumes and blanks it. */
static int annotation(struct parser *P) {
  size_t from = P->tok.pos;
  advance(P);
  if (type_expr(P)) return -1;
  strip_from(P, from);
  return 0;
}

/* ---- statements -------------------------------------------------------- */

/* Name list of `local` (with attribs `<const>`) or `for`, each name optionally `: T`. */
static int name_list(struct parser *P, int attribs) {
  advance(P);
  while (is_ident(P, &P->tok)) {
    advance(P);
    struct tok t1 = peek(P, 1), t2 = peek(P, 2);
    if (attribs && check(P, "<") && t1.kind == T_NAME && is(P, &t2, ">")) {
      advance(P); advance(P); advance(P);
    }
    if (check(P, ":") && annotation(P)) return -1;
    if (!accept(P, ",")) break;
  }
  return 0;
}

/* Parameter list after `(`: names or `...`, each optionally `: T`; then `): R`. Stops
** quietly at anything unexpected and leaves it to Lua to report. */
static int params(struct parser *P) {
  while (is_ident(P, &P->tok) || check(P, "...")) {
    advance(P);
    if (check(P, ":") && annotation(P)) return -1;
    if (!accept(P, ",")) break;
  }
  if (!accept(P, ")")) return 0;
  return check(P, ":") ? annotation(P) : 0;
}

/* `function [a.b:c] [<T>] (params) [: R]` — the body is left to the main loop. */
static int function_header(struct parser *P) {
  advance(P);
  if (is_ident(P, &P->tok)) {
    advance(P);
    struct tok t1;
    while ((check(P, ".") || check(P, ":")) && (t1 = peek(P, 1), is_ident(P, &t1))) {
      advance(P);
      advance(P);
    }
  }
  if (check(P, "<")) {
    size_t from = P->tok.pos;
    if (generic_params(P)) return -1;
    strip_from(P, from);
  }
  return accept(P, "(") ? params(P) : 0;
}

/* `[export] type Name[<T>] = T` at statement start; anything else is left alone. */
static int type_alias(struct parser *P) {
  int exp = check(P, "export");
  struct tok t1 = peek(P, 1), t2 = peek(P, 2), t3 = peek(P, 3);
  if (exp && !is(P, &t1, "type")) { advance(P); return 0; }
  struct tok name = exp ? t2 : t1, after = exp ? t3 : t2;
  if (!ends_stmt(P, &P->prev) || !is_ident(P, &name) ||
      !(is(P, &after, "=") || is(P, &after, "<"))) {
    advance(P);
    return 0;
  }
  size_t from = P->tok.pos;
  advance(P);
  if (exp) advance(P);
  advance(P);
  if (check(P, "<") && generic_params(P)) return -1;
  if (expect(P, "=", "in type alias") || type_expr(P)) return -1;
  strip_from(P, from);
  return 0;
}

/* `::`: a goto label `::name::` is kept; after an expression it is a cast `:: T`. */
static int double_colon(struct parser *P) {
  struct tok t1 = peek(P, 1), t2 = peek(P, 2);
  if (t1.kind == T_NAME && is(P, &t2, "::")) {
    advance(P); advance(P); advance(P);
    return 0;
  }
  if (!ends_expr(P, &P->prev)) { advance(P); return 0; }
  return annotation(P);
}

/* `expr as T` (only with a plain name after `as`: `as(...)`/`as{...}` may be Lua calls)
** and the non-nil assertion `expr!`. */
static int cast_word(struct parser *P) {
  struct tok t1 = peek(P, 1);
  if (!ends_expr(P, &P->prev) || !is_ident(P, &t1)) { advance(P); return 0; }
  return annotation(P);
}

static int bang(struct parser *P) {
  if (!ends_expr(P, &P->prev)) { advance(P); return 0; }
  size_t from = P->tok.pos;
  advance(P);
  strip_from(P, from);
  return 0;
}

/* Handles the current token; always consumes at least one token. */
static int step(struct parser *P) {
  if (check(P, "local")) return name_list(P, 1);
  if (check(P, "for")) return name_list(P, 0);
  if (check(P, "function")) return function_header(P);
  if (check(P, "type") || check(P, "export")) return type_alias(P);
  if (check(P, "as")) return cast_word(P);
  if (check(P, "::")) return double_colon(P);
  if (check(P, "!")) return bang(P);
  advance(P);
  return 0;
}

int strip_types(const char *src, size_t len, char **out, char *err, size_t errlen) {
  struct parser P;
  memset(&P, 0, sizeof P);
  if (err && errlen) err[0] = '\0';
  if (!src && len) {
    if (err && errlen) snprintf(err, errlen, "line 1: no source");
    return -1;
  }
  P.lx = (struct lexer){.s = src ? src : "", .n = len, .pos = 0, .line = 1};
  P.out = xmalloc(len + 1);
  if (len) memcpy(P.out, src, len);
  P.out[len] = '\0';
  P.err = err;
  P.errlen = errlen;
  P.prev.kind = T_BOF;
  lex(&P.lx, &P.tok);
  while (P.tok.kind != T_EOF)
    if (step(&P)) {
      free(P.out);
      if (out) *out = NULL;
      return -1;
    }
  if (out) *out = P.out;
  else free(P.out);
  return 0;
}
