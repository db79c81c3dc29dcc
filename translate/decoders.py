"""Where beam and greedy search get the next token's logits: the model's incremental decoder over
the rows still searching.

Both hold a DecoderCache for N rows and answer `decoder(last, t)`: the logits (N, V) of the tokens
`last` (N,) placed at position t. They differ in what a search may do between steps:

- `CachedDecoder` (the default) lets rows go: `reorder(rows, drop=True)` keeps only the rows of
  sentences still searching, so later steps shrink with the batch.
- `StaticDecoder` keeps every row and every shape fixed for the whole search (finished rows are
  decoded and ignored), so on a GPU its step, embedding to logits, is captured once as a CUDA graph
  and each step is one replay instead of a few hundred kernel launches. Its `reorder` moves the
  cached keys and values in place: the graph reads them at fixed addresses. Its attention runs over
  the whole cache under a mask, as two batched products (`model._single_query_attention`, not SDPA's
  kernel), so its logits equal the CachedDecoder's up to float rounding, and a near-tie can pick
  another token.
"""

from __future__ import annotations

import torch


class CachedDecoder:
    """`model.decode` with a cache over the rows still searching."""

    drops_rows = True

    def __init__(self, model, memory: torch.Tensor, src_pad_mask: torch.Tensor, max_len: int):
        self.model, self.memory, self.mask = model, memory, src_pad_mask
        self.cache = model.new_cache(memory.shape[0], max_len, memory, src_pad_mask)

    def __call__(self, last: torch.Tensor, t: int) -> torch.Tensor:
        return self.model.decode(last[:, None], self.memory, self.mask, self.cache)[:, -1]  # (N, V)

    def reorder(self, rows: torch.Tensor, *, drop: bool) -> None:
        """Continue with cache rows `rows` (N',); `drop`: rows of other sentences left too (the memory
        rows and their cross-attention keys/values then follow; within a sentence they are identical,
        so a plain beam reorder skips them)."""
        if drop:
            self.memory, self.mask = self.memory[rows], self.mask[rows]
        self.cache.reorder(rows, cross=drop)


class StaticDecoder:
    """`model.decode_step` over fixed rows and shapes; a CUDA graph of it when the memory is on a GPU."""

    drops_rows = False

    def __init__(self, model, memory: torch.Tensor, src_pad_mask: torch.Tensor, max_len: int):
        N, device = memory.shape[0], memory.device
        self.model = model
        self.cache = model.new_cache(N, max_len, memory, src_pad_mask)
        self.memory_mask = ~src_pad_mask[:, None, None, :]  # (N, 1, 1, S) True = attend
        self.tokens = torch.zeros(N, dtype=torch.long, device=device)  # the step's inputs, at fixed addresses
        self.position = torch.zeros((), dtype=torch.long, device=device)
        self.graph = None
        if device.type == "cuda":
            self._capture()

    def _step(self) -> torch.Tensor:
        return self.model.decode_step(self.tokens, self.position, self.cache, self.memory_mask)  # (N, V)

    def _capture(self) -> None:
        """Record one step (PyTorch's recipe: warm up on a side stream, then capture), on the device
        the tensors live on (streams are per device: cuda:1's kernels are not captured by cuda:0's
        stream). The warm-up writes garbage at position 0, which the first real step overwrites."""
        with torch.cuda.device(self.tokens.device):
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(2):
                    self._step()
            torch.cuda.current_stream().wait_stream(side)
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):
                self.logits = self._step()  # the output buffer every replay overwrites

    def __call__(self, last: torch.Tensor, t: int) -> torch.Tensor:
        """The logits (N, V) for tokens `last` (N,) at position t; with a graph, valid until the next call."""
        self.tokens.copy_(last)
        self.position.fill_(t)
        self.cache.length = t + 1  # positions filled once this step has run (decode_step leaves it alone)
        if self.graph is None:
            return self._step()
        with torch.cuda.device(self.tokens.device):
            self.graph.replay()
        return self.logits

    def reorder(self, rows: torch.Tensor, *, drop: bool) -> None:
        """Continue row i from row rows[i] (a beam of the same sentence): the filled positions of the
        self-attention keys and values are copied in place; the memory's rows are the same within a
        sentence, so they stay."""
        assert not drop, "a StaticDecoder keeps its rows"
        self.cache.reorder_in_place(rows)
