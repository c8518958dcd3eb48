#!/usr/bin/python3
"""Generates encoder/unicode_tables.c: the Unicode and HTML tables of the CLIP
tokenizer (encoder/tokenizer.c).

    tools/gen_unicode_tables.py > encoder/unicode_tables.c

Every table is measured from the same Python code that OpenAI's
simple_tokenizer.py runs (and tools/ref_tokenize.py with it), so that the C
tokenizer agrees with it character for character:

  - character classes of the pre-tokenizer, [\\p{L}], [\\p{N}] and
    [^\\s\\p{L}\\p{N}], as the `regex` module matches them with re.IGNORECASE
    (which differs from the plain classes: U+0345 matches none of them);
  - whitespace as `regex`'s \\s (whitespace_clean) and as str.isspace()
    (str.strip());
  - str.lower(): the full lower-case mapping of every character, and the
    Cased / Case_Ignorable properties it uses for the final sigma rule
    (measured by lower-casing probe strings, since unicodedata lacks them);
  - html.unescape(): the HTML5 named entities (html.entities.html5), the
    numeric references it replaces (html._invalid_charrefs) and those it
    drops (html._invalid_codepoints).

Needs Debian's python3 and python3-regex (tools/deps.sh --tools).
"""
import html
import html.entities
import sys
import unicodedata

import regex

SHIFT = 7                 # two-level property table: blocks of 128 code points
NCP = 0x110000

P_L, P_N, P_O, P_RSPACE, P_PYSPACE, P_CASE_IGN, P_CASED, P_LOWER = (
    1, 2, 4, 8, 16, 32, 64, 128)


def is_surrogate(c):
    return 0xD800 <= c <= 0xDFFF


def properties():
    ic = regex.IGNORECASE
    p_l = regex.compile(r'[\p{L}]', ic)
    p_n = regex.compile(r'[\p{N}]', ic)
    p_o = regex.compile(r'[^\s\p{L}\p{N}]', ic)
    p_s = regex.compile(r'\s')
    props = bytearray(NCP)
    for c in range(NCP):
        if is_surrogate(c):
            continue
        ch = chr(c)
        p = 0
        if p_l.fullmatch(ch):
            p |= P_L
        if p_n.fullmatch(ch):
            p |= P_N
        if p_o.fullmatch(ch):
            p |= P_O
        if p_s.fullmatch(ch):
            p |= P_RSPACE
        if ch.isspace():
            p |= P_PYSPACE
        # Final sigma probes (CPython's handle_capital_sigma): a case-ignorable
        # character is skipped when looking for the cased neighbour.
        after_cased = ('A' + ch + '\u03a3').lower()[-1] == '\u03c2'
        after_uncased = ('1' + ch + '\u03a3').lower()[-1] == '\u03c2'
        if after_cased and not after_uncased:
            p |= P_CASE_IGN
        elif ch != '\u03a3' and (ch + '\u03a3').lower()[-1] == '\u03c2':
            p |= P_CASED
        if c != 0x3A3 and ch.lower() != ch:
            p |= P_LOWER
        props[c] = p
    # U+03A3 itself is cased; lower() handles it by context.
    props[0x3A3] |= P_CASED | P_LOWER
    return props


def check_case_insensitive_literals():
    """The pattern's literals ("<|startoftext|>", "'s", ...) match, under
    re.IGNORECASE, their own two cases and U+017F for 's' only; the C code
    relies on that."""
    for letter in sorted(set('startoftextendoftextsrevmld')):
        found = [c for c in range(NCP) if not is_surrogate(c)
                 and regex.fullmatch(regex.escape(letter), chr(c),
                                     regex.IGNORECASE)]
        want = sorted({ord(letter), ord(letter.upper())}
                      | ({0x17F} if letter == 's' else set()))
        if found != want:
            sys.exit('gen_unicode_tables: %r matches %s under IGNORECASE'
                     % (letter, [hex(c) for c in found]))
    for sym in "'<|>":
        found = [c for c in range(NCP) if not is_surrogate(c)
                 and regex.fullmatch(regex.escape(sym), chr(c),
                                     regex.IGNORECASE)]
        if found != [ord(sym)]:
            sys.exit('gen_unicode_tables: %r matches more than itself' % sym)


def lower_tables():
    """Single code point mappings as (first, last, stride, delta) runs, and
    the one-to-many mappings separately."""
    single = []
    multi = []
    for c in range(NCP):
        if is_surrogate(c) or c == 0x3A3:
            continue
        low = chr(c).lower()
        if low == chr(c):
            continue
        if len(low) == 1:
            single.append((c, ord(low) - c))
        else:
            multi.append((c, [ord(x) for x in low]))
    runs = []
    i = 0
    while i < len(single):
        c, d = single[i]
        stride = 1
        j = i + 1
        if j < len(single) and single[j][1] == d and single[j][0] - c in (1, 2):
            stride = single[j][0] - c
            while (j < len(single) and single[j][1] == d
                   and single[j][0] - single[j - 1][0] == stride):
                j += 1
        runs.append((c, single[j - 1][0], stride, d))
        i = j
    return runs, multi


def two_level(props):
    blocks = {}
    stage1 = []
    stage2 = []
    size = 1 << SHIFT
    for b in range(NCP >> SHIFT):
        blk = bytes(props[b * size:(b + 1) * size])
        if blk not in blocks:
            blocks[blk] = len(blocks)
            stage2.append(blk)
        stage1.append(blocks[blk])
    return stage1, stage2


def c_array(values, fmt, per_line):
    out = []
    for i in range(0, len(values), per_line):
        out.append('\t' + ','.join(fmt % v for v in values[i:i + per_line])
                   + ',')
    return '\n'.join(out)


def main():
    check_case_insensitive_literals()
    props = properties()
    stage1, stage2 = two_level(props)
    assert len(stage2) < 65536
    runs, multi = lower_tables()
    assert all(len(m) <= 3 for _, m in multi)
    ents = sorted(html.entities.html5.items())
    assert all(len(v) in (1, 2) for _, v in ents)
    assert all(len(k) <= 33 and k.isascii() for k, _ in ents)
    charrefs = sorted(html._invalid_charrefs.items())
    invalid_cp = sorted(html._invalid_codepoints)

    w = sys.stdout.write
    w('/*\n * unicode_tables.c - GENERATED by tools/gen_unicode_tables.py; '
      'do not edit.\n *\n')
    w(' * Python %s, unicodedata %s, regex %s.\n' % (
        sys.version.split()[0], unicodedata.unidata_version,
        regex.__version__))
    w(' * Character classes as the regex module matches them (re.IGNORECASE),\n'
      ' * str.isspace(), str.lower() and its final sigma properties, and the\n'
      ' * tables of html.unescape().  See encoder/tokenizer_internal.h.\n */\n')
    w('#include "encoder/tokenizer_internal.h"\n\n')
    w('#if TKN_SHIFT != %d\n#error "TKN_SHIFT does not match the generated '
      'tables"\n#endif\n\n' % SHIFT)
    stype = 'uint16_t'
    w('const %s tkn_prop_stage1[%d] = {\n' % (stype, len(stage1)))
    w(c_array(stage1, '%d', 24) + '\n};\n\n')
    flat = [b for blk in stage2 for b in blk]
    w('const uint8_t tkn_prop_stage2[%d] = {\n' % len(flat))
    w(c_array(flat, '%d', 32) + '\n};\n\n')

    w('const tkn_lower_run tkn_lower_runs[%d] = {\n' % len(runs))
    w('\n'.join('\t{0x%X, 0x%X, %d, %d},' % r for r in runs) + '\n};\n')
    w('const size_t tkn_lower_nruns = %d;\n\n' % len(runs))
    w('const tkn_lower_multi tkn_lower_multis[%d] = {\n' % len(multi))
    w('\n'.join('\t{0x%X, %d, {%s}},' % (c, len(m), ', '.join(
        '0x%X' % x for x in m)) for c, m in multi) + '\n};\n')
    w('const size_t tkn_lower_nmultis = %d;\n\n' % len(multi))

    w('const tkn_entity tkn_entities[%d] = {\n' % len(ents))
    for name, val in ents:
        cps = [ord(x) for x in val] + [0]
        w('\t{"%s", {0x%X, 0x%X}},\n' % (name, cps[0], cps[1]))
    w('};\nconst size_t tkn_nentities = %d;\n\n' % len(ents))

    w('const tkn_charref tkn_charrefs[%d] = {\n' % len(charrefs))
    w('\n'.join('\t{0x%X, 0x%X},' % (k, ord(v)) for k, v in charrefs)
      + '\n};\n')
    w('const size_t tkn_ncharrefs = %d;\n\n' % len(charrefs))
    w('const uint32_t tkn_dropped_cps[%d] = {\n' % len(invalid_cp))
    w(c_array(invalid_cp, '0x%X', 10) + '\n};\n')
    w('const size_t tkn_ndropped_cps = %d;\n' % len(invalid_cp))
    sys.stderr.write('gen_unicode_tables: %d blocks, %d lower runs, %d multi, '
                     '%d entities\n' % (len(stage2), len(runs), len(multi),
                                        len(ents)))


if __name__ == '__main__':
    main()
