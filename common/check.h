/* Checked library calls (MPI, NCCL, HDF5): a failure names the call, file:line, rank, host and the library's message. */
#ifndef ZF_CHECK_H
#define ZF_CHECK_H

#include "common/status.h"

/* Records "<call> failed at file:line on rank R on HOST: <lib_msg>" with status s and returns s; call is the
 * source text of the call, cut at its argument list. */
zf_status zf_check_fail(zf_status s, const char *call, const char *file, int line, const char *lib_msg);

/* HDF5: a negative return is a failure; the message is the innermost entry of HDF5's error stack. */
zf_status zf_h5_fail(const char *call, const char *file, int line);
#define ZF_H5_CHECK(call) ((call) < 0 ? zf_h5_fail(#call, __FILE__, __LINE__) : ZF_OK)

/* MPI (ZF_MPI_CHECK in coordinator/comm.h) and NCCL (ZF_NCCL_CHECK in coordinator/gpucomm.c) build on
 * zf_check_fail where their headers are included. */

#endif
