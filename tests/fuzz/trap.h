// trap.h — run library code that may die() inside a libFuzzer harness.
//
// srlm's library reports bad input with die(code, ...) -> exit(code). In a libFuzzer process an
// exit() is "fuzz target exited", a crash. The harnesses are linked with -Wl,--wrap=exit (and
// --wrap for the calls that create resources: open, close, fopen, fdopen, open_memstream, fclose, mmap, munmap,
// pcre2_compile_8, pcre2_code_free_8, pcre2_jit_stack_create_8, pcre2_jit_stack_free_8), so that:
//   - inside trap_run(), exit(code) longjmps back to trap_run(), which returns code;
//   - everything the code under test allocated (malloc via the sanitizer's malloc hooks), opened
//     (descriptors, FILEs), mapped, or compiled (pcre2 codes, JIT stacks) and did not release
//     before dying is released then, so a long run neither leaks nor trips LeakSanitizer;
//   - outside trap_run(), every wrapper is the plain call.
// An exit status outside 64..74 (sysexits: usage, data, no input, software, OS, can't create,
// I/O) is not a documented outcome: trap_check() aborts on it, so libFuzzer records the input as
// a crash. Signals, ASSERT failures (abort) and sanitizer reports are crashes as usual.
//
// Only one trap_run() at a time, single-threaded. Objects that must survive trap_run() (the
// harness's own FILEs, buffers, a tokenizer loaded once) must be created outside it.
#ifndef SRLM_FUZZ_TRAP_H
#define SRLM_FUZZ_TRAP_H

#include <stddef.h>
#include <stdint.h>

// Calls fn(arg). Returns -1 if fn returned, else the exit status it died with (after releasing
// what it left behind).
int trap_run(void (*fn)(void *), void *arg);
// Aborts (a crash for libFuzzer) unless status is -1 (returned) or a sysexits code 64..74.
void trap_check(int status, const char *what);
// Call once from LLVMFuzzerInitialize: tool name for messages, malloc hooks.
void trap_init(const char *name);

#endif
