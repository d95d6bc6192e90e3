/* dfar_spm: a C ABI around SentencePiece, built as libdfar_spm.so.
 *
 * Why: Debian's libsentencepiece.so.0 embeds and exports its own protobuf-lite
 * (3.14), while libtorch needs the system libprotobuf (3.21). Linked into one
 * executable, one of the two binds to the other's protobuf and dies. dfar
 * therefore never links libsentencepiece: src/data/tokenizer_sentencepiece.cpp
 * dlopen()s this shim with RTLD_LOCAL | RTLD_DEEPBIND, so SentencePiece and its
 * protobuf stay out of the global symbol scope and resolve to each other.
 *
 * Contracts (every function):
 *  - Never throws, never aborts on bad input it can detect: C++ exceptions are
 *    caught inside the shim.
 *  - Functions returning int return 0 on success and non-zero on failure; on
 *    failure, when `err` is non-NULL, *err receives a NUL-terminated message.
 *  - Every buffer handed out (*err, ids, text, pieces) is allocated by the shim
 *    and must be released with dfar_spm_free_buffer() (not free(): with
 *    RTLD_DEEPBIND the shim's malloc may differ from the caller's).
 *  - A model handle is immutable after dfar_spm_load(); the const functions
 *    may be called on it concurrently. dfar_spm_train() is not thread-safe
 *    (it sets SentencePiece's global random seed).
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Bumped whenever a signature below changes; the loader checks it. */
#define DFAR_SPM_ABI_VERSION 1

typedef struct dfar_spm_model dfar_spm_model;

/* Returns DFAR_SPM_ABI_VERSION as compiled into the shim. */
int dfar_spm_abi_version(void);

/* Releases any buffer the shim handed out. NULL is a no-op. */
void dfar_spm_free_buffer(void* p);

/* Loads a SentencePiece model file. On success *out owns the model. */
int dfar_spm_load(const char* path, dfar_spm_model** out, char** err);

/* Frees a model from dfar_spm_load(). NULL is a no-op. */
void dfar_spm_free(dfar_spm_model* model);

/* Encodes text[0, len) to ids; no BOS/EOS added. *ids gets *n ids (may be
 * NULL when *n is 0). */
int dfar_spm_encode(const dfar_spm_model* model, const char* text, size_t len, int32_t** ids, size_t* n, char** err);

/* Decodes ids[0, n). *text gets *len bytes plus a terminating NUL. The caller
 * checks that ids are in [0, vocab size). */
int dfar_spm_decode(const dfar_spm_model* model, const int32_t* ids, size_t n, char** text, size_t* len, char** err);

/* The piece of one id (caller checks the range). *piece gets *len bytes plus NUL. */
int dfar_spm_id_to_piece(const dfar_spm_model* model, int32_t id, char** piece, size_t* len, char** err);

/* Id of piece[0, len), or the unk id when it is not in the vocabulary. */
int32_t dfar_spm_piece_to_id(const dfar_spm_model* model, const char* piece, size_t len);

/* Vocabulary facts; the special ids are -1 when the model has none. */
int32_t dfar_spm_vocab_size(const dfar_spm_model* model);
int32_t dfar_spm_bos_id(const dfar_spm_model* model);
int32_t dfar_spm_eos_id(const dfar_spm_model* model);
int32_t dfar_spm_pad_id(const dfar_spm_model* model);
int32_t dfar_spm_unk_id(const dfar_spm_model* model);

/* Trains a model from memory: sentences[i] has sentence_lens[i] bytes (empty
 * sentences are skipped). The trainer options are the key/value pairs
 * keys[i] = values[i] of SentencePieceTrainer::Train's map form (they name the
 * output via "model_prefix"). When has_seed is non-zero, calls
 * sentencepiece::SetRandomGeneratorSeed(seed) first. */
int dfar_spm_train(const char* const* sentences, const size_t* sentence_lens, size_t n_sentences,
                   const char* const* keys, const char* const* values, size_t n_args, int has_seed, uint32_t seed,
                   char** err);

#ifdef __cplusplus
} /* extern "C" */
#endif
