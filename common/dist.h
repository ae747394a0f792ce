// dist.h — the tools across MPI ranks (issue 12): one job of N processes, on one machine or many,
// started by a launcher (mpirun, srun). docs/scaling.md is the user's guide.
//
// CONTRACT
//
// dist_init(argc, argv) is the second call of a tool that can run under MPI (after tool_init).
// Without a launcher (no OMPI_COMM_WORLD_SIZE, PMIX_RANK or PMI_RANK in the environment) it does
// nothing and the tool is exactly the one-process tool: rank 0 of 1, every call below a no-op or
// the identity. MPI is then never initialised (a singleton MPI_Init would fork Open MPI's
// runtime: slow, and refused in some containers). SRLM_MPI=0 keeps it off under a launcher too.
//
// Under a launcher it initialises MPI (MPI_THREAD_FUNNELED: only the main thread calls MPI; the
// compute pool's threads never do), and then:
// - every rank must have the same command line and the same build: a rank whose argv or VERSION
//   differs ends the job (exit 64) before any work;
// - rank 0 is the tool to the outside world: it alone reads stdin or the FILE operand, writes
//   stdout, checkpoints and log lines. The other ranks' stdout is /dev/null and their log lines
//   (log_warn/log_info, progress) are muted;
// - every rank parses the same input: every read of a record stream (rec.c) is rank 0's read(2),
//   broadcast (dist_read), so all ranks see the same records, run the same checks on them and
//   make the same decisions, and a bad record ends every rank at the same record;
// - die() and usage_error() end the whole job with MPI_Abort(code): mpirun exits with that
//   code. An error every rank meets (a bad record, a non-finite loss) is reported once, by rank
//   0; a rank that fails alone (cannot read the model on its node) reports it as
//   "<tool>: rank R: <message>" a moment later, unless rank 0 has already ended the job;
// - tool_exit() waits at a barrier (sleeping, not spinning) and finalises MPI.
// A rank killed by a signal ends the job too: mpirun kills the others (no hang).
//
// Waiting never spins for long: a rank waiting for input (rank 0 blocked on a slow upstream) or
// for its peers polls its request and sleeps between polls (100 µs, then 1 ms after 100 ms), so
// idle ranks leave their cores to the work on the machine.
#ifndef SRLM_DIST_H
#define SRLM_DIST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "rec.h"

void dist_init(int argc, char **argv);
int dist_rank(void);                  // 0 without MPI
int dist_size(void);                  // 1 without MPI
// Whether item i (a micro-batch, a prompt group, a batch) is this rank's: i mod size == rank.
bool dist_mine(long long i);

// The tool's input operand (util.h open_input_path) on rank 0; /dev/null on the other ranks,
// which never open it (FILE may exist only on rank 0's machine): they read rank 0's bytes.
FILE *dist_open_input(const char *path, const char **name);

// Rank 0's value of v, on every rank.
long long dist_bcast_ll(long long v);
// Element-wise sums over the ranks, in place, the same on every rank (MPI_Allreduce). The ranks
// first meet at a sleeping barrier, so a rank that finished its share early does not spin.
void dist_sum_f32(float *x, size_t n);
void dist_sum_f64(double *x, size_t n);
void dist_min_f64(double *x, size_t n);
void dist_max_f64(double *x, size_t n);
// Slices of a vector of n elements, one per rank (ZeRO stage 1 keeps the AdamW moments of its
// slice only): this rank's is [*lo, *hi); rank r's is [n r / N, n (r + 1) / N).
void dist_slice(size_t n, size_t *lo, size_t *hi);
// Every rank's slice of x (n elements), from its owner to every rank, in place.
void dist_allgather_slices(float *x, size_t n);
// Rank 0 receives every rank's slice (mine: this rank's, hi - lo elements) into full (n
// elements, rank 0 only; NULL elsewhere).
void dist_gather_slices(float *full, const float *mine, size_t n);
// Ends the job (rank 0: die(EX_DATAERR)) when v differs between ranks:
// "<what> differs between ranks: rank 0 has <v0>, rank R <vR><hint>".
void dist_check_same(const char *what, uint64_t v, const char *hint);

// Ordered output: items (a prompt group's samples, a batch's records) are computed on the rank
// that owns them and written by rank 0 in item order, so the stream is byte-identical for any
// number of ranks.
//   dist_out_open(&w)               w: the tool's stdout writer (header already written)
//   per item i owned by this rank:  struct rec_writer *iw = dist_item_begin();
//                                   ...write the item's records to iw...
//                                   dist_item_end(i);
//   dist_out_close(nitems)          rank 0 writes the rest as it arrives; then rec_write_end(&w)
// With one rank, dist_item_begin returns w itself (records go straight out, as without MPI).
// Memory: rank 0 holds items computed ahead of an item still being computed on another rank;
// a rank waits when more than 64 of its items are unsent or unwritten. Items must be dealt so
// that the owner of item i has read every input record item i needs before rank 0 waits for it
// (true when items are cut from the input in order on every rank).
void dist_out_open(struct rec_writer *w);
struct rec_writer *dist_item_begin(void);
void dist_item_end(long long i);
void dist_out_close(long long nitems);

#endif
