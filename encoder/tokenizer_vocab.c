/*
 * tokenizer_vocab.c - embeds the built-in CLIP vocabulary
 * (encoder/vocab/bpe_simple_vocab_16e6.txt.gz, 1.3 MB) in the program, so
 * that clip_tokenizer_load_builtin() needs no file at run time.
 *
 * The assembler reads the file while the encoder library is compiled; the
 * path is relative to the repository root, where make runs.
 */
#include "encoder/tokenizer_internal.h"

__asm__(
    "\t.section .rodata\n"
    "\t.balign 16\n"
    "\t.globl tkn_vocab_gz_begin\n"
    "\t.hidden tkn_vocab_gz_begin\n"
    "tkn_vocab_gz_begin:\n"
    "\t.incbin \"encoder/vocab/bpe_simple_vocab_16e6.txt.gz\"\n"
    "\t.globl tkn_vocab_gz_end\n"
    "\t.hidden tkn_vocab_gz_end\n"
    "tkn_vocab_gz_end:\n"
    "\t.previous\n");

extern const unsigned char tkn_vocab_gz_begin[];
extern const unsigned char tkn_vocab_gz_end[];

void
tkn_builtin_vocab_gz(const unsigned char **data, size_t *len)
{
	*data = tkn_vocab_gz_begin;
	*len = (size_t)(tkn_vocab_gz_end - tkn_vocab_gz_begin);
}
