/* The mapping between a quantized block (or the unquantized globals) and its shard's layers and tensors. */
#ifndef ZF_SHARDMAP_H
#define ZF_SHARDMAP_H

#include "common/model.h"
#include "common/shard.h"
#include "worker/block.h"
#include "worker/qblock.h"

/* Writes block b to the shard at path: each layer's codes, grids, ζ, bias and statistics, and the folded norms.
 * group_size is the configured one (<= 0 for one grid per output channel). */
zf_status zf_shardmap_write_block(const zf_model_config *c, int64_t b, const zf_qblock *qb, int64_t group_size,
                                  const char *path, const char *prov);
/* Writes the tensors left in full precision (embeddings, final norm, untied head) to the shard at path. */
zf_status zf_shardmap_write_globals(const zf_model_config *c, const zf_model_globals *g, const char *path,
                                    const char *prov);
/* Rebuilds a finished block from its shard (read by zf_shard_read from path): codes, grids and the deployable block. */
zf_status zf_qblock_from_shard(const zf_model_config *c, int64_t b, const char *path, const zf_shard_data *d,
                               zf_qblock *qb);

#endif
