#!/usr/bin/python3
"""Reference SentencePiece tokenizers for SigLIP and SigLIP2, and the
fixtures of tests/encoder_sptok.c.

    tools/ref_sptok.py --train    # retrain the fixture models, rewrite all
    tools/ref_sptok.py            # keep the committed models, rewrite the
                                  # configs, corpus.jsonl and expected.jsonl

It needs only Debian's python3-sentencepiece (0.1.97): the models are
trained with its SentencePieceTrainer, the ids come from its
SentencePieceProcessor, and the preprocessing around it is transformers'
Python code rewritten here, step for step, from these files of
huggingface/transformers:

  src/transformers/models/siglip/tokenization_siglip.py
      @ 095a021d704bd46dca3e42b8fbb47a7535674fec  (SiglipTokenizer)
  src/transformers/models/gemma/tokenization_gemma.py
      @ 05b18e11a81e3a51234a71953afc27a02d253a37  (GemmaTokenizer)
  src/transformers/models/siglip2/tokenization_siglip2.py
      @ 1d64b218ed2473d304e090461d9d6515ec8c0682  (Siglip2Tokenizer: the
      Gemma tokenizer with a Lowercase normalizer, transformers 5)
  src/transformers/models/siglip2/convert_siglip2_to_hf.py
      @ 0c85c9ae42dc3e4ab1d194f9d5b4f02963cf983b  (the hub folders' Gemma
      tokenizer: add_bos_token=False, add_eos_token=True, padding right)
  src/transformers/tokenization_utils.py (transformers 4.4x:
      PreTrainedTokenizer.tokenize, _add_tokens, Trie.split) and
  src/transformers/tokenization_utils_base.py (4.4x: _from_pretrained,
      prepare_for_model, truncate_sequences, _pad).

docs/TOKENIZER.md says what is applied and where it differs.

Fixtures written to tests/fixtures/spm/:
  siglip/         spiece.model (unigram, 1000 pieces, T5's layout:
                  <pad>=0 </s>=1 <unk>=2, no BOS; NFKC on a few ranges
                  (T5's full nmt_nfkc table is 240 KB); trained with a
                  dummy prefix, which the tokenizer turns off),
                  tokenizer_config.json, special_tokens_map.json as
                  SiglipTokenizer.save_pretrained() writes them
  siglip2/        tokenizer.model (BPE, 1200 pieces, Gemma's layout:
                  <pad>=0 <eos>=1 <bos>=2 <unk>=3, user-defined pieces,
                  byte fallback, split digits, identity normalisation, no
                  dummy prefix), the configs of the SigLIP2 hub folders
  siglip-variant/ spiece.model, a tokenizer_config.json without
                  added_tokens_decoder: do_lower_case false, 16 positions,
                  padding on the left, split_special_tokens (class
                  defaults for the tokens)
  gemma-variant/  tokenizer.model, legacy configs: special tokens from
                  special_tokens_map.json (EOS <end_of_turn>, pad
                  <unused0>), BOS and EOS added, 16 positions, padding and
                  truncation on the left
  gemma-words/    tokenizer.model, added tokens with lstrip, rstrip and
                  single_word; BOS, no EOS (GemmaTokenizer's defaults)
  corpus.jsonl    one {"hex": UTF-8 bytes, "text": ...} per line
  expected.jsonl  {"folder", "ctx", "i" (corpus line), "n", "ids"}: the
                  context_len ids clip_tokenize() must write for that text,
                  n of them before the padding
"""
import argparse
import json
import os
import random
import shutil
import string
import sys
import tempfile

import re  # Python's re, as transformers uses it (not the regex module)

import sentencepiece as spm

HERE = os.path.dirname(os.path.abspath(__file__))
FIX = os.path.normpath(os.path.join(HERE, '..', 'tests', 'fixtures', 'spm'))

SPIECE_UNDERLINE = '\u2581'
SPECIAL_TOKENS_ATTRIBUTES = ['bos_token', 'eos_token', 'unk_token',
                             'sep_token', 'pad_token', 'cls_token',
                             'mask_token', 'additional_special_tokens']

# ---- The training corpus -------------------------------------------------

WORDS = '''a an the of in on at to with and or but is are was photo picture
image dog dogs cat cats bird horse cow sheep car bus bike train plane boat
man woman child children people person girl boy family friends beach sea
ocean lake river mountain mountains snow forest tree trees flower flowers
garden park city street road house building bridge tower church sky cloud
clouds sun sunset sunrise night moon star stars rain red green blue yellow
black white orange purple pink brown gray grey small big large little old
young happy sad running walking sitting standing eating playing sleeping
two three four five many some one top left right bottom middle near far
food pizza cake coffee tea wine bread apple banana table chair room kitchen
window door book phone computer camera painting drawing sketch view close
up portrait landscape summer winter spring autumn day morning evening
birthday party wedding holiday travel paris london tokyo new york street
market festival music concert game ball field team water fire light dark'''.split()

FOREIGN = '''café naïve façade élève über straße grüße mañana niño señor
ação coração são paulo æble smørrebrød øresund ελλάδα καλημέρα σοφία
москва привет мир 東京 大阪 北京 上海 日本語 中文 한국어 서울 ภาษาไทย
العربية עברית हिन्दी'''.split()

PUNCT = list(',.!?;:\'"()[]{}-_/\\@#$%&*+=<>|~^`')


def training_lines(rng, n):
    lines = []
    for _ in range(n):
        k = rng.randint(3, 12)
        words = []
        for _ in range(k):
            r = rng.random()
            if r < 0.85:
                w = rng.choice(WORDS)
            elif r < 0.95:
                w = rng.choice(FOREIGN)
            else:
                w = str(rng.randint(0, 99999))
            c = rng.random()
            if c < 0.15:
                w = w.capitalize()
            elif c < 0.18:
                w = w.upper()
            if rng.random() < 0.12:
                w += rng.choice(PUNCT)
            words.append(w)
        lines.append(' '.join(words))
    return lines


def canonicalize(text):
    """SiglipTokenizer.canonicalize_text (keep_punctuation_exact_string
    None), applied to a lower-cased line: the SigLIP model sees text in
    this form."""
    text = text.translate(str.maketrans('', '', string.punctuation))
    return re.sub(r'\s+', ' ', text).strip()


def nfkc_subset_rules():
    """A SentencePiece normalization TSV with NFKC's mappings of a few
    ranges (Latin-1, general punctuation spaces, letterlike forms,
    ligatures, full-width forms, circled numbers): T5's nmt_nfkc charsmap
    is 240 KB, this one a few KB, and it exercises the same machinery."""
    import unicodedata
    ranges = [(0xa0, 0xff), (0x2000, 0x200a), (0x2024, 0x2026),
              (0x2070, 0x209c), (0x2100, 0x214f), (0x2460, 0x2473),
              (0x3000, 0x3000), (0xfb00, 0xfb06), (0xff01, 0xff5e)]
    lines = []
    for lo, hi in ranges:
        for c in range(lo, hi + 1):
            n = unicodedata.normalize('NFKC', chr(c))
            if n != chr(c) and n:
                lines.append('%X\t%s' % (c, ' '.join('%X' % ord(x)
                                                       for x in n)))
    return '\n'.join(lines) + '\n'


def train(tmp):
    spm.set_random_generator_seed(11)
    rng = random.Random(11)
    lines = training_lines(rng, 6000)
    raw = os.path.join(tmp, 'raw.txt')
    canon = os.path.join(tmp, 'canon.txt')
    with open(raw, 'w', encoding='utf-8') as f:
        f.write('\n'.join(lines) + '\n')
    with open(canon, 'w', encoding='utf-8') as f:
        f.write('\n'.join(canonicalize(l.lower()) for l in lines) + '\n')
    rules = os.path.join(tmp, 'nfkc_subset.tsv')
    with open(rules, 'w', encoding='utf-8') as f:
        f.write(nfkc_subset_rules())
    # SigLIP: T5's SentencePiece layout (pad 0, eos 1, unk 2, no bos).
    spm.SentencePieceTrainer.train(
        input=canon, model_prefix=os.path.join(tmp, 'siglip'),
        model_type='unigram', vocab_size=1000, character_coverage=0.9995,
        normalization_rule_tsv=rules, add_dummy_prefix=True,
        remove_extra_whitespaces=True, pad_id=0, eos_id=1, unk_id=2,
        bos_id=-1, pad_piece='<pad>', eos_piece='</s>', unk_piece='<unk>',
        num_threads=1, minloglevel=2)
    # SigLIP2: Gemma's layout (pad 0, eos 1, bos 2, unk 3, then
    # user-defined pieces), BPE with byte fallback.
    spm.SentencePieceTrainer.train(
        input=raw, model_prefix=os.path.join(tmp, 'gemma'),
        model_type='bpe', vocab_size=1200, character_coverage=0.9995,
        normalization_rule_name='identity', add_dummy_prefix=False,
        remove_extra_whitespaces=False, allow_whitespace_only_pieces=True,
        split_digits=True, byte_fallback=True, pad_id=0, eos_id=1, bos_id=2,
        unk_id=3, pad_piece='<pad>', eos_piece='<eos>', bos_piece='<bos>',
        unk_piece='<unk>',
        user_defined_symbols=['<mask>', '[@BOS@]', '<unused0>', '<unused1>',
                              '<start_of_turn>', '<end_of_turn>'],
        num_threads=1, minloglevel=2)
    for folder, name, src in (('siglip', 'spiece.model', 'siglip'),
                              ('siglip2', 'tokenizer.model', 'gemma')):
        os.makedirs(os.path.join(FIX, folder), exist_ok=True)
        shutil.copy(os.path.join(tmp, src + '.model'),
                    os.path.join(FIX, folder, name))


def copy_models():
    """The variants use the same models."""
    for folder, src in (('siglip-variant', 'siglip/spiece.model'),
                        ('gemma-variant', 'siglip2/tokenizer.model'),
                        ('gemma-words', 'siglip2/tokenizer.model')):
        os.makedirs(os.path.join(FIX, folder), exist_ok=True)
        shutil.copy(os.path.join(FIX, src), os.path.join(
            FIX, folder, os.path.basename(src)))


# ---- The folders' configuration files ------------------------------------

def added(content, lstrip=False, rstrip=False, special=True):
    return {'content': content, 'lstrip': lstrip, 'normalized': False,
            'rstrip': rstrip, 'single_word': False, 'special': special}


def no_special(t):
    return {k: v for k, v in t.items() if k != 'special'}


def configs():
    """{folder: {file name: JSON object}}, as the hub folders have them."""
    sig = {i: added(c, True, True) for i, c in ((1, '</s>'), (2, '<unk>'))}
    gem_tokens = [(0, '<pad>', True), (1, '<eos>', True), (2, '<bos>', True),
                  (3, '<unk>', True), (4, '<mask>', False),
                  (5, '[@BOS@]', False), (6, '<unused0>', False),
                  (7, '<unused1>', False), (8, '<start_of_turn>', True),
                  (9, '<end_of_turn>', True)]
    gem = {i: added(c, special=s) for i, c, s in gem_tokens}
    return {
        'siglip': {
            'tokenizer_config.json': {
                'added_tokens_decoder': {str(i): t for i, t in sig.items()},
                'additional_special_tokens': [],
                'clean_up_tokenization_spaces': True,
                'do_lower_case': True,
                'eos_token': '</s>',
                'model_input_names': ['input_ids'],
                'model_max_length': 64,
                'pad_token': '</s>',
                'processor_class': 'SiglipProcessor',
                'sp_model_kwargs': {},
                'tokenizer_class': 'SiglipTokenizer',
                'unk_token': '<unk>',
            },
            'special_tokens_map.json': {
                'eos_token': no_special(sig[1]),
                'pad_token': no_special(sig[1]),
                'unk_token': no_special(sig[2]),
            },
        },
        'siglip2': {
            'tokenizer_config.json': {
                'add_bos_token': False,
                'add_eos_token': True,
                'added_tokens_decoder': {str(i): t for i, t in gem.items()},
                'additional_special_tokens': ['<start_of_turn>',
                                              '<end_of_turn>'],
                'bos_token': '<bos>',
                'clean_up_tokenization_spaces': False,
                'eos_token': '<eos>',
                'extra_special_tokens': {},
                'model_input_names': ['input_ids'],
                'model_max_length': 1000000000000000019884624838656,
                'pad_token': '<pad>',
                'padding_side': 'right',
                'processor_class': 'SiglipProcessor',
                'sp_model_kwargs': {},
                'spaces_between_special_tokens': False,
                'tokenizer_class': 'GemmaTokenizer',
                'unk_token': '<unk>',
                'use_default_system_prompt': False,
            },
            'special_tokens_map.json': {
                'additional_special_tokens': ['<start_of_turn>',
                                              '<end_of_turn>'],
                'bos_token': no_special(gem[2]),
                'eos_token': no_special(gem[1]),
                'pad_token': no_special(gem[0]),
                'unk_token': no_special(gem[3]),
            },
        },
        'siglip-variant': {
            'tokenizer_config.json': {
                'do_lower_case': False,
                'model_max_length': 16,
                'padding_side': 'left',
                'split_special_tokens': True,
                'tokenizer_class': 'SiglipTokenizer',
            },
        },
        'gemma-words': {
            'tokenizer_config.json': {
                'add_bos_token': True,
                'added_tokens_decoder': dict(
                    {str(i): t for i, t in gem.items() if i < 4},
                    **{'4': dict(added('<mask>', lstrip=True,
                                       special=False), single_word=True),
                       '6': dict(added('<unused0>', rstrip=True),
                                 single_word=True),
                       '8': added('<start_of_turn>', lstrip=True,
                                  rstrip=True)}),
                'eos_token': '<eos>',
                'pad_token': '<pad>',
                'tokenizer_class': 'Siglip2Tokenizer',
            },
        },
        'gemma-variant': {
            'tokenizer_config.json': {
                'add_bos_token': True,
                'add_eos_token': True,
                'model_max_length': 16,
                'padding_side': 'left',
                'truncation_side': 'left',
                'tokenizer_class': 'GemmaTokenizerFast',
            },
            'special_tokens_map.json': {
                'additional_special_tokens': ['<start_of_turn>'],
                'bos_token': '<bos>',
                'eos_token': no_special(gem[9]),
                'pad_token': '<unused0>',
                'unk_token': '<unk>',
            },
        },
    }


def write_configs():
    for folder, files in configs().items():
        for name, obj in files.items():
            with open(os.path.join(FIX, folder, name), 'w',
                      encoding='utf-8') as f:
                json.dump(obj, f, indent=2, ensure_ascii=False)
                f.write('\n')


# ---- transformers, rewritten ---------------------------------------------

class AddedToken:
    """tokenization_utils_base.AddedToken (what matters here)."""

    def __init__(self, content, single_word=False, lstrip=False,
                 rstrip=False, normalized=True, special=False):
        self.content = content
        self.single_word = single_word
        self.lstrip = lstrip
        self.rstrip = rstrip
        self.normalized = normalized
        self.special = special

    def __str__(self):
        return self.content


class Trie:
    """tokenization_utils.Trie: add() and split(), unchanged."""

    def __init__(self):
        self.data = {}
        self._tokens = set()

    def add(self, word):
        if not word:
            return
        self._tokens.add(word)
        ref = self.data
        for char in word:
            ref[char] = char in ref and ref[char] or {}
            ref = ref[char]
        ref[''] = 1

    def split(self, text):
        states = {}
        offsets = [0]
        skip = 0
        for current, current_char in enumerate(text):
            if skip and current < skip:
                continue
            to_remove = set()
            reset = False
            for start, trie_pointer in states.items():
                if '' in trie_pointer:
                    for lookstart, looktrie_pointer in states.items():
                        if lookstart > start:
                            break
                        elif lookstart < start:
                            lookahead_index = current + 1
                            end = current + 1
                        else:
                            lookahead_index = current
                            end = current
                        next_char = (text[lookahead_index]
                                     if lookahead_index < len(text) else None)
                        if '' in looktrie_pointer:
                            start = lookstart
                            end = lookahead_index
                            skip = lookahead_index
                        while next_char in looktrie_pointer:
                            looktrie_pointer = looktrie_pointer[next_char]
                            lookahead_index += 1
                            if '' in looktrie_pointer:
                                start = lookstart
                                end = lookahead_index
                                skip = lookahead_index
                            if lookahead_index == len(text):
                                break
                            next_char = text[lookahead_index]
                    offsets.append(start)
                    offsets.append(end)
                    reset = True
                    break
                elif current_char in trie_pointer:
                    trie_pointer = trie_pointer[current_char]
                    states[start] = trie_pointer
                else:
                    to_remove.add(start)
            if reset:
                states = {}
            else:
                for start in to_remove:
                    del states[start]
            if current >= skip and current_char in self.data:
                states[current] = self.data[current_char]
        for start, trie_pointer in states.items():
            if '' in trie_pointer:
                offsets.append(start)
                offsets.append(len(text))
                break
        return self.cut_text(text, offsets)

    @staticmethod
    def cut_text(text, offsets):
        offsets.append(len(text))
        tokens = []
        start = 0
        for end in offsets:
            if start > end:
                continue
            elif start == end:
                continue
            tokens.append(text[start:end])
            start = end
        return tokens


def _varint(b, i):
    v = 0
    shift = 0
    while True:
        c = b[i]
        i += 1
        v |= (c & 0x7F) << shift
        shift += 7
        if c < 0x80:
            return v, i


def _put_varint(v):
    out = bytearray()
    while True:
        c = v & 0x7F
        v >>= 7
        if v:
            out.append(c | 0x80)
        else:
            out.append(c)
            return bytes(out)


def _fields(b):
    """(field number, wire type, bytes of the whole field) of a message."""
    i = 0
    while i < len(b):
        key, j = _varint(b, i)
        wt = key & 7
        if wt == 0:
            _, k = _varint(b, j)
        elif wt == 1:
            k = j + 8
        elif wt == 2:
            n, j = _varint(b, j)
            k = j + n
        elif wt == 5:
            k = j + 4
        else:
            raise ValueError('unsupported protobuf wire type %d' % wt)
        yield key >> 3, wt, b[i:k], b[j:k]
        i = k


def no_dummy_prefix(model):
    """SiglipTokenizer.get_spm_processor(): the ModelProto with
    normalizer_spec.add_dummy_prefix = False (MergeFrom of a NormalizerSpec
    that sets only that field).  transformers does it with the protobuf
    classes; python3-protobuf is not needed here because the message is
    rewritten on the wire: ModelProto field 3 is normalizer_spec,
    NormalizerSpec field 3 is add_dummy_prefix."""
    out = bytearray()
    done = False
    for num, wt, whole, payload in _fields(model):
        if num == 3 and wt == 2 and not done:
            sub = bytearray()
            for n2, _, w2, _ in _fields(payload):
                if n2 != 3:
                    sub += w2
            sub += b'\x18\x00'
            out += b'\x1a' + _put_varint(len(sub)) + sub
            done = True
        else:
            out += whole
    if not done:
        out += b'\x1a\x02\x18\x00'
    return bytes(out)


def load_json(path):
    if not os.path.exists(path):
        return None
    with open(path, encoding='utf-8') as f:
        return json.load(f)


def to_added(value):
    if isinstance(value, dict):
        value = dict(value)
        value.pop('__type', None)
        return AddedToken(**value)
    return value


class Tokenizer:
    """SiglipTokenizer (kind 'siglip') or the SigLIP2 Gemma tokenizer (kind
    'gemma'), loaded from a folder as from_pretrained() does, called as the
    processors are: padding="max_length", truncation=True,
    max_length=context_len."""

    def __init__(self, folder, kind):
        self.kind = kind
        # _from_pretrained(): tokenizer_config.json are the init kwargs.
        init_kwargs = load_json(os.path.join(folder,
                                             'tokenizer_config.json')) or {}
        init_kwargs = {k: to_added(v) if k in SPECIAL_TOKENS_ATTRIBUTES
                       else v for k, v in init_kwargs.items()}
        added_tokens_decoder = {}
        added_tokens_map = {}
        if 'added_tokens_decoder' in init_kwargs:
            for idx, token in init_kwargs['added_tokens_decoder'].items():
                token = AddedToken(**token)
                added_tokens_decoder[int(idx)] = token
                added_tokens_map[str(token)] = token
        else:
            # legacy: special_tokens_map.json overrides the config
            stm = load_json(os.path.join(folder, 'special_tokens_map.json'))
            for key, value in (stm or {}).items():
                if isinstance(value, dict):
                    value = AddedToken(**value, special=True)
                elif key == 'additional_special_tokens' and \
                        isinstance(value, list):
                    extra = init_kwargs.pop('additional_special_tokens',
                                            []) or []
                    for token in value:
                        if isinstance(token, dict):
                            token = AddedToken(**token, special=True)
                        if token not in extra:
                            extra.append(token)
                    value = extra
                init_kwargs[key] = value
        for key in SPECIAL_TOKENS_ATTRIBUTES:
            if key in init_kwargs and added_tokens_map and \
                    init_kwargs[key] is not None and \
                    key != 'additional_special_tokens':
                init_kwargs[key] = added_tokens_map.get(
                    str(init_kwargs[key]), init_kwargs[key])

        # The tokenizer class's __init__.
        if kind == 'siglip':
            name = 'spiece.model'
            defaults = {'eos_token': '</s>', 'unk_token': '<unk>',
                        'pad_token': '</s>'}

            def wrap(t):
                return AddedToken(t, rstrip=True, lstrip=True,
                                  normalized=False, special=True)
            self.do_lower_case = init_kwargs.get('do_lower_case', True)
        else:
            name = 'tokenizer.model'
            defaults = {'unk_token': '<unk>', 'bos_token': '<bos>',
                        'eos_token': '<eos>', 'pad_token': '<pad>'}

            def wrap(t):
                return AddedToken(t, normalized=False, special=True)
            self.add_bos_token = init_kwargs.get('add_bos_token', True)
            self.add_eos_token = init_kwargs.get('add_eos_token', False)
            self.do_lower_case = False  # see tokenize_gemma
        with open(os.path.join(folder, name), 'rb') as f:
            proto = f.read()
        if kind == 'siglip':
            proto = no_dummy_prefix(proto)
        self.sp = spm.SentencePieceProcessor()
        self.sp.LoadFromSerializedProto(proto)
        self.special = {}
        for key in SPECIAL_TOKENS_ATTRIBUTES[:-1]:
            value = init_kwargs.get(key, defaults.get(key))
            if isinstance(value, str):
                value = wrap(value)
            self.special[key] = value
        self.additional = list(init_kwargs.get('additional_special_tokens')
                               or [])
        self.padding_side = init_kwargs.get('padding_side', 'right')
        self.truncation_side = init_kwargs.get('truncation_side', 'right')
        self.split_special_tokens = init_kwargs.get('split_special_tokens',
                                                    False)

        # PreTrainedTokenizer.__init__: the added tokens, then the special
        # tokens not yet among them (_add_tokens, special_tokens=True).
        self.decoder = dict(added_tokens_decoder)
        self.encoder = {t.content: i for i, t in self.decoder.items()}
        vocab = {self.sp.id_to_piece(i): i
                 for i in range(self.sp.get_piece_size())}
        new_idx = len(vocab)
        for token in self.all_special_tokens_extended():
            if str(token) in self.encoder:
                continue
            if isinstance(token, str):
                token = AddedToken(token, normalized=False, special=True)
            else:
                token.special = True
            if token.content not in vocab:
                raise ValueError('special token %r is not in the model'
                                 % token.content)
            idx = vocab[token.content]
            self.decoder[idx] = token
            self.encoder[token.content] = idx
        self.trie = Trie()
        for token in self.decoder.values():
            self.trie.add(token.content)
        self.unk_token = str(self.special['unk_token'])

    def all_special_tokens_extended(self):
        out = []
        seen = set()
        for key in SPECIAL_TOKENS_ATTRIBUTES[:-1]:
            v = self.special[key]
            if v and str(v) not in seen:
                out.append(v)
                seen.add(str(v))
        for v in self.additional:
            if str(v) not in seen:
                out.append(v)
                seen.add(str(v))
        return out

    def all_special_tokens(self):
        return [str(t) for t in self.all_special_tokens_extended()]

    def token_id(self, token):
        """_convert_token_to_id_with_added_voc"""
        if token in self.encoder:
            return self.encoder[token]
        return self.sp.piece_to_id(token)

    # PreTrainedTokenizer.tokenize, with SiglipTokenizer._tokenize or
    # GemmaTokenizer._tokenize for the text between added tokens.
    def base_tokenize(self, text, _tokenize):
        if self.do_lower_case:
            escaped = [re.escape(s) for s in self.all_special_tokens()]
            escaped += [re.escape(t.content) for t in self.decoder.values()
                        if not t.special and t.normalized]
            pattern = r'(' + r'|'.join(escaped) + r')|' + r'(.+?)'
            text = re.sub(pattern,
                          lambda m: m.groups()[0] or m.groups()[1].lower(),
                          text)
        if self.split_special_tokens:
            no_split_token = []
            tokens = [text]
        else:
            no_split_token = self.encoder.keys()
            tokens = self.trie.split(text)
        for i, token in enumerate(tokens):
            if token in no_split_token:
                tok_extended = self.decoder.get(self.encoder[token])
                left = tokens[i - 1] if i > 0 else None
                right = tokens[i + 1] if i < len(tokens) - 1 else None
                if tok_extended.rstrip and right:
                    tokens[i + 1] = right.lstrip()
                if tok_extended.lstrip and left:
                    tokens[i - 1] = left.rstrip()
                if tok_extended.single_word and left and left[-1] != ' ':
                    tokens[i - 1] += token
                    tokens[i] = ''
                elif tok_extended.single_word and right and right[0] != ' ':
                    tokens[i + 1] = token + tokens[i + 1]
                    tokens[i] = ''
        out = []
        for token in tokens:
            if not token:
                continue
            if token in no_split_token:
                out.append(token)
            else:
                out.extend(_tokenize(token))
        return out

    def siglip_tokenize(self, text):
        """SiglipTokenizer.tokenize"""
        tokens = self.base_tokenize(
            SPIECE_UNDERLINE + text.replace(SPIECE_UNDERLINE, ' '),
            self.siglip_piece_tokenize)
        if len(tokens) > 1 and tokens[0] == SPIECE_UNDERLINE and \
                tokens[1] in self.all_special_tokens():
            tokens = tokens[1:]
        return tokens

    def siglip_piece_tokenize(self, text):
        """SiglipTokenizer._tokenize"""
        text = canonicalize(text)
        tokens = self.sp.encode(self.unk_token + text, out_type=str)
        unk_token_length = len(self.sp.encode(self.unk_token))
        return tokens[unk_token_length:] \
            if len(tokens) >= unk_token_length else tokens

    def gemma_tokenize(self, text):
        """GemmaTokenizer.tokenize / _tokenize (sp_model.encode, no prefix)
        on the text between added tokens, which Siglip2Tokenizer's
        normalizers.Lowercase() lower-cases first: character by character
        (tokenizers' NormalizedString::lowercase maps each char with
        char::to_lowercase), so no final-sigma rule."""
        return self.base_tokenize(
            text, lambda t: self.sp.encode(''.join(c.lower() for c in t),
                                           out_type=str))

    def build_inputs(self, ids):
        if self.kind == 'siglip':
            # _add_eos_if_not_present
            eos = self.token_id(str(self.special['eos_token']))
            if len(ids) > 0 and ids[-1] == eos:
                return ids
            return ids + [eos]
        bos = [self.token_id(str(self.special['bos_token']))] \
            if self.add_bos_token else []
        eos = [self.token_id(str(self.special['eos_token']))] \
            if self.add_eos_token else []
        return bos + ids + eos

    def __call__(self, text, max_length):
        tokens = self.siglip_tokenize(text) if self.kind == 'siglip' \
            else self.gemma_tokenize(text)
        ids = [self.token_id(t) for t in tokens]
        # prepare_for_model: truncation=True (longest_first) with the
        # special tokens counted, then the special tokens, then padding.
        total = len(ids) + len(self.build_inputs([]))
        if total > max_length:
            remove = total - max_length
            assert len(ids) > remove
            if self.truncation_side == 'left':
                ids = ids[remove:]
            else:
                ids = ids[:-remove]
        seq = self.build_inputs(ids)
        n = len(seq)
        pad = self.token_id(str(self.special['pad_token']))
        if self.padding_side == 'right':
            seq = seq + [pad] * (max_length - n)
        else:
            seq = [pad] * (max_length - n) + seq
        return seq, n


# ---- The test corpus -----------------------------------------------------

def corpus():
    texts = [
        '', ' ', '   ', '!!!', '\u2581', '\u2581\u2581 x', 'a',
        'a photo of a dog', 'A Photo Of A DOG', 'A PHOTO OF TWO CATS',
        'a dog on a beach at sunset',
        'hello, world!', "it's a dog's life", 'e-mail me: cat@example.com',
        'C++ (and) [brackets] {braces} <angles>', '100% sure?!', 'a.b.c',
        '#hashtag @user $5 ~tilde `back` ^caret |pipe| \\slash/',
        '"quoted" \'single\' \u201ccurly\u201d \u2018quotes\u2019',
        'don\u2019t stop \u2014 em\u2013en dash \u2026 ellipsis',
        '2024', '3.14159', '1,000,000 people', 'call 555-1234 now',
        'room 101 and 2 cats', '\u0661\u0662\u0663 arabic digits',
        'caf\u00e9', 'cafe\u0301 decomposed', 'na\u00efve fa\u00e7ade',
        '\u00c6r\u00f8sk\u00f8bing', 'S\u00e3o Paulo', 'Stra\u00dfe GR\u00dcSSE',
        '\u0130stanbul \u0131s\u0131k', '\u03a3\u038a\u03a3\u03a5\u03a6\u039f\u03a3 \u03bf\u03b4\u03c5\u03c3\u03c3\u03b5\u03cd\u03c2',
        '\u01c5 \u01c4 \u01c6 titlecase', '\ufb01 ligature \ufb00',
        '\uff21\uff22\uff23 full width \uff11\uff12\uff13', '\u2460 \u00b2 \u00bd',
        '\u6771\u4eac\u30bf\u30ef\u30fc', '\u5317\u4eac \u4e0a\u6d77',
        '\u65e5\u672c\u8a9e\u306e\u6587\u7ae0\u3067\u3059\u3002',
        '\ud55c\uad6d\uc5b4 \uc11c\uc6b8', '\u0e20\u0e32\u0e29\u0e32\u0e44\u0e17\u0e22',
        '\u0627\u0644\u0639\u0631\u0628\u064a\u0629', '\u05e2\u05d1\u05e8\u05d9\u05ea',
        '\u0939\u093f\u0928\u094d\u0926\u0940', '\u041c\u043e\u0441\u043a\u0432\u0430 \u041f\u0420\u0418\u0412\u0415\u0422',
        '\U0001f436\U0001f431 dog and cat',
        '\U0001f468\u200d\U0001f469\u200d\U0001f467 family',
        '\U0001f1eb\U0001f1f7 flag', '\U0001f44d\U0001f3fd thumbs',
        'emoji\U0001f600only\U0001f600', '\U0001f600',
        '  a   b\t\tc\n\nd  ', '\u00a0nbsp\u2003em\u3000ideographic\u00a0',
        '\u001c\u001d\u001e\u001f separators', 'zero\u200bwidth',
        'line\u2028sep para\u2029sep', 'nel\u0085char', 'tab\tand\vvt\x0cff',
        'bell\x07 del\x7f', 'nul\x00byte', '\r\ncrlf\r\n',
        '</s>', 'a </s> b', 'a</s>b', '</S>', '</s></s>', 'x</s>',
        '</s> leading', 'trailing </s>', '<unk>', '<unk>hello', 'a <unk> b',
        '<UNK>', '<pad>', 'a <pad> b', '<eos>', '<EOS>', 'hello<eos>world',
        '<bos> start', 'end <eos>', '<mask>', '<MASK>', 'the <mask> sat',
        '<start_of_turn>user', '<start_of_turn>user\nhi<end_of_turn>',
        '<unused0><unused1>', '[@BOS@]', '<s>', '< / s >',
        'a<mask>b', 'word<mask> x', 'x <mask>word', '<mask><mask>',
        'a <unused0>  b', '<unused0>x', 'x<unused0> y',
        '  <start_of_turn>  hi  ', 'A</s>B', 'a  </s>  b  <unk>  c',
        '\u2581underline \u2581', 'under\u2581line', '\u2581</s>',
        '\u2581\u2581</s>\u2581', ' </s> ', '\t</s>\n',
        'lorem ipsum ' * 40,
        'a photo of ' + 'a very ' * 60 + 'big dog',
        ' '.join(str(i) for i in range(120)),
        'x' * 500, '\U0001f600' * 100, 'ab' * 300,
        'supercalifragilisticexpialidocious',
        'The Quick Brown Fox Jumps Over The Lazy Dog!',
    ]
    rng = random.Random(2024)
    frags = (WORDS[:80] + FOREIGN + PUNCT +
             ['</s>', '<unk>', '<pad>', '<eos>', '<bos>', '<mask>',
              '<start_of_turn>', '\u2581', ' ', '  ', '\t', '\n', '\u00a0',
              '\u3000', '\U0001f600', '\u0130', '\u03a3', '\u00df', '42',
              '007', '3.5', 'CAPS', 'MiXeD'])
    for _ in range(200):
        k = rng.randint(1, 14)
        parts = [rng.choice(frags) for _ in range(k)]
        sep = rng.choice(['', ' ', ' ', ' ', '  '])
        t = sep.join(parts)
        if rng.random() < 0.3:
            t = t.upper()
        texts.append(t)
    pool = (list(range(0x20, 0x7f)) + [0x2581, 0x3a3, 0x130, 0xdf, 0xa0,
                                       0x3000, 0x85, 0x1c, 0x200b]
            + list(range(0xc0, 0x180)) + list(range(0x391, 0x3ca))
            + list(range(0x4e00, 0x4e40)) + [0x1f600, 0x1f436, 0x1f1eb])
    for _ in range(60):
        k = rng.randint(1, 40)
        texts.append(''.join(chr(rng.choice(pool)) for _ in range(k)))
    return texts


RUNS = [  # (folder, kind, context lengths, which corpus lines)
    ('siglip', 'siglip', [64], None),
    ('siglip2', 'gemma', [64], None),
    ('siglip2', 'gemma', [8], 150),
    ('siglip-variant', 'siglip', [16], 150),
    ('gemma-variant', 'gemma', [16], 150),
    ('gemma-words', 'gemma', [16], None),
]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--train', action='store_true',
                    help='retrain the models (else keep the committed ones)')
    args = ap.parse_args()
    if args.train:
        # Relative names: the trainer records its input and output paths
        # in the model, which must not depend on the temporary folder.
        cwd = os.getcwd()
        with tempfile.TemporaryDirectory() as tmp:
            os.chdir(tmp)
            try:
                train('.')
            finally:
                os.chdir(cwd)
    copy_models()
    write_configs()
    texts = corpus()
    with open(os.path.join(FIX, 'corpus.jsonl'), 'w', encoding='utf-8') as f:
        for t in texts:
            f.write(json.dumps({'hex': t.encode('utf-8').hex(), 'text': t})
                    + '\n')
    with open(os.path.join(FIX, 'expected.jsonl'), 'w',
              encoding='utf-8') as f:
        for folder, kind, ctxs, limit in RUNS:
            tok = Tokenizer(os.path.join(FIX, folder), kind)
            for ctx in ctxs:
                for i, t in enumerate(texts[:limit]):
                    ids, n = tok(t, ctx)
                    f.write(json.dumps({'folder': folder, 'ctx': ctx, 'i': i,
                                        'n': n, 'ids': ids},
                                       separators=(',', ':')) + '\n')
    print('%d texts; models: %s' % (len(texts), ', '.join(
        '%s %d bytes' % (p, os.path.getsize(os.path.join(FIX, p)))
        for p in ('siglip/spiece.model', 'siglip2/tokenizer.model'))),
        file=sys.stderr)


if __name__ == '__main__':
    main()
