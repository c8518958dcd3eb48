#!/usr/bin/python3
"""Reference CLIP tokenizer: a port of OpenAI's clip/simple_tokenizer.py
(https://github.com/openai/CLIP) without ftfy, reading the same vocabulary
file as the C tokenizer.  It writes the expected ids that
tests/encoder_tokenizer.c compares against.

    tools/ref_tokenize.py --make-corpus > tests/fixtures/tokenizer/corpus.jsonl
    tools/ref_tokenize.py tests/fixtures/tokenizer/corpus.jsonl \\
        > tests/fixtures/tokenizer/expected.jsonl

Corpus lines are JSON objects {"text": STRING} (or {"hex": UTF-8 bytes in
hex, "text": ...} for texts that a C string cannot hold, such as NUL).
Expected lines are {"n": N, "ids": [...]}: what clip_tokenize() returns
before the padding, N ids with start and end tokens (at most 77: start, the
first 75 tokens, end).  Needs Debian's python3-regex.
"""
import gzip
import html
import json
import os
import random
import sys

import regex as re

HERE = os.path.dirname(os.path.abspath(__file__))
VOCAB = os.path.join(HERE, '..', 'encoder', 'vocab',
                     'bpe_simple_vocab_16e6.txt.gz')
CONTEXT = 77


def bytes_to_unicode():
    bs = (list(range(ord('!'), ord('~') + 1))
          + list(range(ord('¡'), ord('¬') + 1))
          + list(range(ord('®'), ord('ÿ') + 1)))
    cs = bs[:]
    n = 0
    for b in range(2 ** 8):
        if b not in bs:
            bs.append(b)
            cs.append(2 ** 8 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def get_pairs(word):
    return {(word[i], word[i + 1]) for i in range(len(word) - 1)}


def basic_clean(text):
    # simple_tokenizer.py runs ftfy.fix_text(text) first; clipdex does not.
    text = html.unescape(html.unescape(text))
    return text.strip()


def whitespace_clean(text):
    text = re.sub(r'\s+', ' ', text)
    return text.strip()


class SimpleTokenizer:
    def __init__(self, bpe_path=VOCAB):
        self.byte_encoder = bytes_to_unicode()
        merges = gzip.open(bpe_path).read().decode('utf-8').split('\n')
        merges = merges[1:49152 - 256 - 2 + 1]
        merges = [tuple(m.split()) for m in merges]
        vocab = list(bytes_to_unicode().values())
        vocab = vocab + [v + '</w>' for v in vocab]
        for m in merges:
            vocab.append(''.join(m))
        vocab.extend(['<|startoftext|>', '<|endoftext|>'])
        self.encoder = dict(zip(vocab, range(len(vocab))))
        self.bpe_ranks = dict(zip(merges, range(len(merges))))
        self.cache = {'<|startoftext|>': '<|startoftext|>',
                      '<|endoftext|>': '<|endoftext|>'}
        self.pat = re.compile(
            r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|"""
            r"""[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""", re.IGNORECASE)

    def bpe(self, token):
        if token in self.cache:
            return self.cache[token]
        word = tuple(token[:-1]) + (token[-1] + '</w>',)
        pairs = get_pairs(word)
        if not pairs:
            return token + '</w>'
        while True:
            bigram = min(pairs,
                         key=lambda p: self.bpe_ranks.get(p, float('inf')))
            if bigram not in self.bpe_ranks:
                break
            first, second = bigram
            new_word = []
            i = 0
            while i < len(word):
                try:
                    j = word.index(first, i)
                    new_word.extend(word[i:j])
                    i = j
                except ValueError:
                    new_word.extend(word[i:])
                    break
                if (word[i] == first and i < len(word) - 1
                        and word[i + 1] == second):
                    new_word.append(first + second)
                    i += 2
                else:
                    new_word.append(word[i])
                    i += 1
            word = tuple(new_word)
            if len(word) == 1:
                break
            pairs = get_pairs(word)
        word = ' '.join(word)
        self.cache[token] = word
        return word

    def encode(self, text):
        out = []
        text = whitespace_clean(basic_clean(text)).lower()
        for token in re.findall(self.pat, text):
            token = ''.join(self.byte_encoder[b] for b in token.encode('utf-8'))
            out.extend(self.encoder[t] for t in self.bpe(token).split(' '))
        return out

    def tokenize(self, text):
        """clip.tokenize(text, truncate=True) without the padding."""
        ids = [self.encoder['<|startoftext|>']] + self.encode(text) + \
            [self.encoder['<|endoftext|>']]
        if len(ids) > CONTEXT:
            ids = ids[:CONTEXT]
            ids[-1] = self.encoder['<|endoftext|>']
        return ids


# ---- The corpus -----------------------------------------------------------

HAND = [
    # the known facts
    'a photo of a cat', 'A Dog!!', '', ' ', '     ', '\t\n \r\n',
    # punctuation and digits
    'Hello, world!', 'What?!?! No way...', '(parentheses) [brackets] {braces}',
    'e-mail: someone@example.com, https://example.org/a/b?c=d&e=f#g',
    'C++ and C# and F#', '$100.00 -- 50% off!!! (limited time)',
    '3.14159265358979', '1234567890', '2024-01-31 23:59:59', '1st 2nd 3rd 4th',
    'room 101, floor -2, +33 6 12 34 56 78', '½ ¾ ² ³ ¹ ⅓ Ⅻ ⑦ ٣ ४ 〇',
    '#hashtag @mention ~tilde `backtick` ^caret |pipe| \\backslash/',
    '...', '!!!', '?', '"quoted"', "'single'", '---', '___', '***', '<>',
    # contractions
    "don't", "I'm", "you're", "we've", "she'll", "he'd", "it's", "can't",
    "DON'T STOP", "It'S", "y'all", "rock'n'roll", "'s", "'", "''", "'''s",
    "o'clock", "the dog's bone", "the dogs' bones", "I'D'VE", "'LL 'RE 'VE",
    "don’t (curly apostrophe)", "it‘s ‛odd’ quotes", "ſ 'ſ 'ſtop",
    # accents and scripts
    'café naïve résumé façade jalapeño Ångström', 'Crème Brûlée',
    'cafe\u0301 (combining acute)', 'Ærøskøbing, Łódź, Dvořák, Ñandú',
    'Ελληνικά: Καλημέρα κόσμε', 'ΟΔΥΣΣΕΥΣ', 'ΣΊΣΥΦΟΣ σίσυφος', 'Σ', 'ΑΣ',
    'ΑΣ.', 'ΑΣ ΒΣ', 'Α\u0301Σ\u0301', 'AΣb', '1Σ', 'ΣΣΣ', 'Σ\u0345Σ',
    'ὈΔΥΣΣΕΎΣ', 'Русский текст: Привет, мир!', 'ЁЖИК в тумане',
    'Українська: Ґанок, Їжак, Єнот', 'Српски: Љубав Њива Џеп',
    '日本語のテキスト', '中文文本测试', '한국어 텍스트', 'ひらがな カタカナ 漢字',
    'Tiếng Việt có dấu', 'ภาษาไทย', 'العربية', 'עברית', 'हिन्दी', 'ქართული',
    'Ӏ ӏ Ԁ', 'ß ẞ', 'ǅ ǈ ǋ ǲ', 'ﬁ ﬂ ﬀ', 'Ⅰ Ⅱ Ⅲ', 'Ⓐ Ⓑ ⓒ', '𝐀𝐁𝐂 𝒜 𝔄',
    'İstanbul', 'İİİ', 'DİYARBAKIR ıi', 'I\u0307 i\u0307', 'KELVIN \u212a',
    'Ω ohm \u2126', 'Å angstrom \u212b', '\u0345', 'a\u0345b', 'Ͱͱ Ͳͳ',
    'Ⴀ ⴀ Ꭰ ꭰ', '𐐀𐐨 (Deseret)', '𞤀𞤢 (Adlam)', 'ＡＢＣ ｆｕｌｌｗｉｄｔｈ １２３',
    # emoji
    '😀', 'I love 🍕 and 🍺!', '👍🏽 👍🏿', '👨‍👩‍👧‍👦 family', '🏳️‍🌈 flag',
    '❤️ ♥ ☺', '🇫🇷 🇯🇵 🇺🇸', '🧑🏾‍💻 coder', '🤷‍♀️', 'cat🐈dog🐕',
    '👁‍🗨', '🔥🔥🔥🔥🔥🔥🔥🔥🔥🔥', '1️⃣ #️⃣',
    # HTML entities
    '&amp;', '&amp;amp;', '&amp;amp;amp;', '&lt;b&gt;bold&lt;/b&gt;',
    'fish &amp chips', 'AT&T', 'a & b', 'a&b', '&', '&&', '&;', '&#;', '&#',
    '&#x;', '&#65;', '&#x41;', '&#X41', '&#0065;', '&#65', '&#x1F600;',
    '&#128512;', '&#0;', '&#13;', '&#128;', '&#x80;', '&#x9F;', '&#x81;',
    '&#1;', '&#x7F;', '&#xFDD0;', '&#xFFFE;', '&#x10FFFF;', '&#x110000;',
    '&#xD800;', '&#55296;', '&#99999999999999999999999;', '&#x' + 'f' * 40,
    '&eacute;', '&Eacute;', '&eacute', '&copy 2024', '&notin;', '&notin',
    '&notit;', '&ampxyz;', '&amplifier', '&nbsp;&nbsp;spaced&nbsp;',
    '&NotNestedGreaterGreater;', '&nvlt;', '&bne;', '&fjlig;', '&lt&gt',
    '&LT;', '&Lt;', '&lT;', '&unknownentity;', '&' + 'a' * 40 + ';',
    '&aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaamp;', '&amp' + 'x' * 29 + ';',
    '&amp' + 'x' * 28 + ';', '&amp' + 'x' * 40, '&notin' + 'z' * 26 + ';', '&é;', '&amp;#65;', '&amp;lt;',
    '&#38;amp;', '&#38;#38;amp;', '&#x26;lt;', '&quot;hi&quot;',
    "&apos;s", '&lt;|endoftext|&gt;', '&Sigma;&Sigma;', '&hellip;&mdash;',
    '&#8217;s', 'Tom &amp; Jerry&#39;s', 'a&ltb', '&gt&lt&amp',
    '&amp\tx', '&am\np;', '&#x3000;x&#x3000;', '&#10;&#9;a&#32;b',
    '&#xA0;nbsp&#160;', '&nbsp', '&NewLine;a&Tab;b', '&ZeroWidthSpace;z',
    # special tokens in text
    '<|startoftext|>', '<|endoftext|>', 'hello<|endoftext|>world',
    '<|STARTOFTEXT|>', '<|EndOfText|>', '<|endoftext|><|startoftext|>',
    '!<|endoftext|>', '<|endoftext', '<|startoftext |>', '<|ſtartoftext|>',
    '<|endofteXt|> x', 'a <|endoftext|> b',
    # whitespace
    'tabs\tand\ttabs', 'new\nlines\n\nhere', '\n\nleading and trailing\n\n',
    'non\u00a0breaking\u00a0space', 'ideographic\u3000space',
    'em\u2003space en\u2002space thin\u2009space', 'zero\u200bwidth',
    'line\u2028sep para\u2029sep', 'nel\u0085next', 'vt\x0bff\x0ccr\r',
    'fs\x1cgs\x1drs\x1eus\x1f', '\x1c\x1d leading separators',
    'trailing separators \x1e\x1f', '\x1cx\x1c', ' \x1f ', 'ogham\u1680space',
    'narrow\u202fnbsp', 'math\u205fspace', 'a  \t  b', '\u3000\u3000',
    'mongolian\u180evowel', 'bom\ufeffhere', 'soft\u00adhyphen',
    # controls and odd characters
    'bell\x07', 'del\x7f', 'c1\x80\x9f', '\ufffd replacement',
    'private \ue000\U000f0000', 'noncharacter \ufffe \uffff',
    '\U0010fffd last plane', 'tag \U000e0041\U000e0042',
    'variation \ufe0f selector', 'RTL \u202e override \u202c',
    # long texts
    'a ' * 100, 'word ' * 80, 'supercalifragilisticexpialidocious ' * 10,
    ' '.join(str(i) for i in range(200)),
    'The quick brown fox jumps over the lazy dog. ' * 10,
    'x' * 300, 'abc' * 200, '!' * 500, '🙂' * 100, 'é' * 400, 'ab' * 1000,
    'Pneumonoultramicroscopicsilicovolcanoconiosis',
    'Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod '
    'tempor incididunt ut labore et dolore magna aliqua. Ut enim ad minim '
    'veniam, quis nostrud exercitation ullamco laboris nisi ut aliquip ex ea '
    'commodo consequat.',
    # image-search style queries
    'a photo of a dog playing in the snow', 'sunset over the ocean',
    'my daughter\'s 5th birthday party, 2019', 'IMG_2034.JPG',
    'red car parked next to a blue house', 'Eiffel Tower at night',
    'screenshot of a spreadsheet', 'two cats sleeping on a sofa',
    'a black-and-white photograph', 'receipt from the café',
]

# Fragments the random texts are drawn from: ASCII, whitespace kinds,
# entities, contraction and special token pieces, letters of many scripts,
# digits, marks, emoji pieces.
FRAGMENTS = (
    list('abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789')
    + list('!"#$%&\'()*+,-./:;<=>?@[\\]^_`{|}~')
    + [' ', '  ', '\t', '\n', '\r', '\x0b', '\x0c', '\x1c', '\x1f', '\x85',
       '\xa0', '\u2003', '\u3000', '\u200b', '\u2028']
    + ['&amp;', '&amp', '&lt;', '&gt', '&#39;', '&#x27;', '&#', '&#x', '&',
       ';', '&eacute;', '&Sigma;', '&nbsp;', '&notin', '&quot;', '&#x130;',
       '&#931;', '&#0;', '&#128;', '&#xd800;']
    + ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'LL", "'",
       '<|', '|>', '<|endoftext|>', '<|startoftext|>', 'ſ']
    + list('éèêëàâäôöûüçñøåæœßÉÈÀÇÑØÅÆŒİıĳĲǅ')
    + list('ΑΒΓΔΣσςΩωάέΐ') + list('АБВГДЁЖабвгдёж') + list('中文日本語한국어')
    + list('٠١٢३४५๑²½Ⅻ⑦') + ['\u0301', '\u0307', '\u0345', '\u200d', '\ufe0f']
    + ['😀', '👍', '🏽', '👨', '👩', '🍕', '🇫', '🇷', '❤', '🏳'])


def random_text(rng):
    n = rng.randint(1, 40)
    return ''.join(rng.choice(FRAGMENTS) for _ in range(n))


def random_codepoints(rng):
    out = []
    for _ in range(rng.randint(1, 16)):
        while True:
            c = rng.choice([rng.randint(0, 0x7F), rng.randint(0x80, 0x7FF),
                            rng.randint(0x800, 0xFFFF),
                            rng.randint(0x10000, 0x10FFFF)])
            if not 0xD800 <= c <= 0xDFFF:
                break
        out.append(chr(c))
        if rng.random() < 0.3:
            out.append(' ')
    return ''.join(out)


def lower_sweep():
    """Every character that str.lower() changes, 10 to a line."""
    chars = [chr(c) for c in range(0x110000)
             if not 0xD800 <= c <= 0xDFFF and chr(c).lower() != chr(c)]
    return [' '.join(chars[i:i + 10]) for i in range(0, len(chars), 10)]


def make_corpus():
    rng = random.Random(20240601)
    texts = list(HAND)
    texts += [random_text(rng) for _ in range(300)]
    texts += [random_codepoints(rng) for _ in range(120)]
    texts += lower_sweep()
    texts.append('nul\x00inside')
    for t in texts:
        rec = {'text': t}
        if '\x00' in t:
            rec['hex'] = t.encode('utf-8').hex()
        line = json.dumps(rec, ensure_ascii=False)
        for sep in '\x85\u2028\u2029':  # line breaks to some readers
            line = line.replace(sep, '\\u%04x' % ord(sep))
        sys.stdout.write(line + '\n')


def main():
    if sys.argv[1:] == ['--make-corpus']:
        make_corpus()
        return
    if len(sys.argv) != 2:
        sys.exit('usage: ref_tokenize.py --make-corpus | CORPUS.jsonl')
    tok = SimpleTokenizer()
    with open(sys.argv[1], encoding='utf-8') as f:
        for line in f:
            rec = json.loads(line)
            text = (bytes.fromhex(rec['hex']).decode('utf-8') if 'hex' in rec
                    else rec['text'])
            ids = tok.tokenize(text)
            sys.stdout.write(json.dumps({'n': len(ids), 'ids': ids},
                                        separators=(',', ':')) + '\n')


if __name__ == '__main__':
    main()
