"""Scenarios run on every rank of a local gloo group (see dist_harness.py and test_layer.py).

Each compares the sharded computation with the single-process SparseLinear on the same pattern
and weights, in float64, and returns what the test checks.
"""

from __future__ import annotations

from pathlib import Path

import torch

from sparselinear import Connectivity, SparseLinear, kernels
from sparselinear.distributed import (
    CSRFile,
    ParquetEdges,
    RandomBlocks,
    RowPartition,
    ShardedSparseLinear,
    consolidated_state_dict,
    load_checkpoint,
    load_consolidated_state_dict,
    save_checkpoint,
    step_volume,
    to_sparse_linear,
)
from sparselinear.distributed import ring as ring_module

TOL = 1e-6


def pattern(n_out: int = 23, n_in: int = 17, seed: int = 0) -> Connectivity:
    """A skewed pattern with empty rows: rows 0-2 dense, the rest sparse, rows 5 and 9 empty."""
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(n_out, n_in, generator=g) < 0.15
    mask[:3] = True
    mask[5] = mask[9] = False
    return Connectivity(mask)


def single(conn: Connectivity, seed: int = 1) -> SparseLinear:
    torch.manual_seed(seed)
    return SparseLinear(conn.in_features, conn.out_features, conn, dtype=torch.float64)


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).detach().abs().max()) if a.numel() else 0.0


def matches_single(rank: int, world: int, shared: Path, group) -> dict:
    conn = pattern()
    ref = single(conn)
    layer = ShardedSparseLinear.from_sparse_linear(ref, gather_output=True, group=group)
    (s0, s1), (e0, e1) = layer.rows, layer.output_partition.edges(rank)
    x = torch.randn(6, 17, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    target = torch.randn(6, 23, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    diffs = {}
    opt_ref = torch.optim.Adam(ref.parameters(), lr=0.01)
    opt = torch.optim.Adam(layer.parameters(), lr=0.01)
    for step in range(3):
        xs, xr = x.clone().requires_grad_(), x.clone().requires_grad_()
        y, yr = layer(xs), ref(xr)
        torch.nn.functional.mse_loss(y, target).backward()
        torch.nn.functional.mse_loss(yr, target).backward()
        if step == 0:
            diffs["forward"] = _max_diff(y, yr)
            diffs["grad_input"] = _max_diff(xs.grad, xr.grad)
            diffs["grad_weight"] = _max_diff(layer.weight.grad, ref.weight.grad[e0:e1])
            diffs["grad_bias"] = _max_diff(layer.bias.grad, ref.bias.grad[s0:s1])
        opt.step()
        opt_ref.step()
        opt.zero_grad()
        opt_ref.zero_grad()
    diffs["adam_weight"] = _max_diff(layer.weight, ref.weight[e0:e1])
    diffs["adam_bias"] = _max_diff(layer.bias, ref.bias[s0:s1])
    edges = layer.output_partition.edge_bounds
    return {"diffs": diffs, "local_nnz": layer.local.nnz, "edges": edges}


def stack(rank: int, world: int, shared: Path, group) -> dict:
    c1, c2 = pattern(23, 17, 0), pattern(11, 23, 4)
    r1, r2 = single(c1, 1), single(c2, 2)
    l1 = ShardedSparseLinear.from_sparse_linear(r1, group=group)
    l2 = ShardedSparseLinear.from_sparse_linear(r2, input_partition=l1.output_partition,
                                                gather_output=True, group=group)
    x = torch.randn(5, 17, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    xs, xr = x.clone().requires_grad_(), x.clone().requires_grad_()
    h = torch.tanh(l1(xs))
    assert h.shape == (5, l1.local.out_features)
    for lay in (l1, l2):
        lay.comm.bytes_sent = 0
    y = l2(h)
    yr = r2(torch.tanh(r1(xr)))
    (y ** 2).sum().backward()
    (yr ** 2).sum().backward()
    (e0, e1), (f0, f1) = l1.output_partition.edges(rank), l2.output_partition.edges(rank)
    predicted = step_volume(5, 23, 11, world, itemsize=8, input="sharded", gather_output=True,
                            input_sizes=l1.output_partition.sizes(),
                            output_sizes=l2.output_partition.sizes(), rank=rank)["total"]
    return {"diffs": {
        "forward": _max_diff(y, yr),
        "grad_input": _max_diff(xs.grad, xr.grad),
        "grad_w1": _max_diff(l1.weight.grad, r1.weight.grad[e0:e1]),
        "grad_w2": _max_diff(l2.to_canonical(l2.weight.grad), r2.weight.grad[f0:f1]),
    }, "bytes": l2.bytes_sent, "predicted": predicted}


def recurrent(rank: int, world: int, shared: Path, group) -> dict:
    conn = pattern(19, 19, 6)
    ref = single(conn, 3)
    layer = ShardedSparseLinear.from_sparse_linear(ref, input_partition="output", group=group)
    s0, s1 = layer.rows
    h0 = torch.randn(4, 19, dtype=torch.float64, generator=torch.Generator().manual_seed(7))
    h0r = h0.clone().requires_grad_()
    hs = h0[:, s0:s1].clone().requires_grad_()
    h, hr = hs, h0r
    for _ in range(3):
        h, hr = torch.tanh(layer(h)), torch.tanh(ref(hr))
    h.sum().backward()
    hr.sum().backward()
    e0, e1 = layer.output_partition.edges(rank)
    return {"diffs": {
        "state": _max_diff(h, hr[:, s0:s1]),
        "grad_state": _max_diff(hs.grad, h0r.grad[:, s0:s1]),
        "grad_weight": _max_diff(layer.to_canonical(layer.weight.grad), ref.weight.grad[e0:e1]),
    }}


def _ring_against_single(rank: int, world: int, group, backend: str, piece_bytes: int,
                         batch: int = 7, threads: int = 1, window_bytes: int = 2 << 20) -> dict:
    """A layer whose input is row-sharded unevenly (rank 0 owns 2 of 17 inputs) and whose last
    rank owns rows without edges, trained 3 Adam steps beside the single-process layer."""
    mask = pattern(12, 17, 3).to_dense().bool()
    mask[8:] = False  # rows 8.. have no inputs: the last rank owns no edges
    ref = single(Connectivity(mask), 5)
    inputs = RowPartition((0, 2, 17) if world == 2 else (0, 2, 3, 17), (0,) * (world + 1))
    bounds = [0, 8, 12] if world == 2 else [0, 4, 8, 12]
    previous = (ring_module.PIECE_BYTES, ring_module.MIN_CHUNK_ROWS, ring_module.WINDOW_BYTES,
                torch.get_num_threads())
    ring_module.PIECE_BYTES, ring_module.MIN_CHUNK_ROWS = piece_bytes, 1
    ring_module.WINDOW_BYTES = window_bytes
    torch.set_num_threads(threads)
    try:
        with kernels.use_backend(backend):
            layer = ShardedSparseLinear.from_sparse_linear(
                ref, input_partition=inputs, row_bounds=bounds, group=group)
            a0, a1 = inputs.rows(rank)
            (s0, s1), (e0, e1) = layer.rows, layer.output_partition.edges(rank)
            opt, opt_ref = (torch.optim.Adam(m.parameters(), lr=0.01) for m in (layer, ref))
            diffs = {}
            for step in range(3):
                x = torch.randn(batch, 17, dtype=torch.float64,
                                generator=torch.Generator().manual_seed(step))
                xs = x[:, a0:a1].clone().requires_grad_()
                xr = x.clone().requires_grad_()
                y, yr = layer(xs), ref(xr)
                target = torch.randn(batch, 12, dtype=torch.float64,
                                     generator=torch.Generator().manual_seed(10 + step))
                torch.nn.functional.mse_loss(y, target[:, s0:s1], reduction="sum").backward()
                torch.nn.functional.mse_loss(yr, target, reduction="sum").backward()
                for what, a, b in (("forward", y, yr[:, s0:s1]),
                                   ("grad_input", xs.grad, xr.grad[:, a0:a1]),
                                   ("grad_weight", layer.to_canonical(layer.weight.grad),
                                    ref.weight.grad[e0:e1]),
                                   ("grad_bias", layer.bias.grad, ref.bias.grad[s0:s1])):
                    diffs[what] = max(diffs.get(what, 0.0), _max_diff(a, b))
                opt.step()
                opt_ref.step()
                opt.zero_grad()
                opt_ref.zero_grad()
            diffs["adam_weight"] = _max_diff(layer.to_canonical(layer.weight), ref.weight[e0:e1])
            diffs["adam_bias"] = _max_diff(layer.bias, ref.bias[s0:s1])
            pieces = layer._ring_product.pieces(batch, 8)
            windows = layer._ring_product.windows(batch, 8)
            compiled = kernels.extension_enabled(layer.weight)
    finally:
        ring_module.PIECE_BYTES, ring_module.MIN_CHUNK_ROWS, ring_module.WINDOW_BYTES, \
            threads = previous
        torch.set_num_threads(threads)
    return {"diffs": diffs, "local_nnz": layer.local.nnz, "pieces": pieces, "windows": windows,
            "compiled": compiled}


def ring_whole_shards(rank: int, world: int, shared: Path, group) -> dict:
    return _ring_against_single(rank, world, group, "torch", 8 << 20)


def ring_small_pieces(rank: int, world: int, shared: Path, group) -> dict:
    """Pieces of two batch rows of the widest shard: the batch of 7 goes round in 4 chunks."""
    return _ring_against_single(rank, world, group, "torch", 2 * 15 * 8)


def ring_compiled_kernels(rank: int, world: int, shared: Path, group) -> dict:
    """The compiled kernels (where they build), one batch row at a time."""
    return _ring_against_single(rank, world, group, "auto", 1)


def ring_compiled_wide_chunks(rank: int, world: int, shared: Path, group) -> dict:
    """The compiled kernels on two threads, a batch of 40 in two chunks of 20 rows (a 16-wide
    tile and a tail): each block's gradients added into the rank's gradient and the partial
    sums across chunks, threads and tiles."""
    return _ring_against_single(rank, world, group, "auto", 20 * 15 * 8, batch=40, threads=2)


def ring_windows_compiled(rank: int, world: int, shared: Path, group) -> dict:
    """The backward pass in 4 windows of the shards' features (some empty: rank 0's shard is
    2 wide), two chunks of 20 rows, on two threads: the compiled sweep over column windows."""
    return _ring_against_single(rank, world, group, "auto", 20 * 15 * 8, batch=40, threads=2,
                                window_bytes=20 * 4 * 8)


def ring_windows_torch(rank: int, world: int, shared: Path, group) -> dict:
    """The backward pass in 3 windows with torch's kernels (each window's part of a block's
    pattern cut out), 4 chunks of 2 rows."""
    return _ring_against_single(rank, world, group, "torch", 2 * 15 * 8, window_bytes=2 * 5 * 8)


def ring_edge_cases(rank: int, world: int, shared: Path, group) -> dict:
    """An empty batch, and a frozen weight (the input gradient alone goes round)."""
    ref = single(pattern(12, 17, 3), 6)
    inputs = RowPartition.even(17, world)
    layer = ShardedSparseLinear.from_sparse_linear(ref, input_partition=inputs, group=group)
    a0, a1 = inputs.rows(rank)
    s0, s1 = layer.rows
    empty = torch.zeros(0, a1 - a0, dtype=torch.float64, requires_grad=True)
    y0 = layer(empty)
    y0.sum().backward()
    layer.weight.requires_grad_(False)
    layer.weight.grad = None  # the empty batch's (zeros)
    ref.weight.requires_grad_(False)
    x = torch.randn(4, 17, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    xs, xr = x[:, a0:a1].clone().requires_grad_(), x.clone().requires_grad_()
    (layer(xs) ** 2).sum().backward()  # the ranks' losses sum to the single process's
    (ref(xr) ** 2).sum().backward()
    return {"empty": tuple(y0.shape) == (0, s1 - s0) and empty.grad.shape == empty.shape,
            "diffs": {"grad_input": _max_diff(xs.grad, xr.grad[:, a0:a1])},
            "frozen": layer.weight.grad is None}


def ring_stack_compiled(rank: int, world: int, shared: Path, group) -> dict:
    with kernels.use_backend("auto"):
        return stack(rank, world, shared, group)


def uneven(rank: int, world: int, shared: Path, group) -> dict:
    mask = torch.zeros(12, 8, dtype=torch.bool)
    mask[:4, ::2] = True  # only the first 4 rows have edges
    ref = single(Connectivity(mask), 4)
    bounds = [0, 4, 12] if world == 2 else [0, 4, 8, 12]
    layer = ShardedSparseLinear.from_sparse_linear(ref, row_bounds=bounds, gather_output=True,
                                                   group=group)
    x = torch.randn(3, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(9))
    x.requires_grad_()
    xr = x.detach().clone().requires_grad_()
    y, yr = layer(x), ref(xr)
    y.sum().backward()
    yr.sum().backward()
    return {"local_nnz": layer.local.nnz, "diffs": {
        "forward": _max_diff(y, yr), "grad_input": _max_diff(x.grad, xr.grad)}}


def random_blocks(rank: int, world: int, shared: Path, group) -> dict:
    src = RandomBlocks(40, 30, nnz=200, seed=11, block_rows=3)
    layer = ShardedSparseLinear(30, 40, src, group=group)
    whole = consolidated_state_dict(layer)
    if rank != 0:
        return {}
    expected = src.connectivity()
    return {"same": torch.equal(whole["col_indices"], expected.col_indices().long())
            and torch.equal(whole["crow_indices"], expected.crow_indices().long())}


def files(rank: int, world: int, shared: Path, group) -> dict:
    expected = torch.load(shared / "expected.pt")
    out = {}
    for name, src in (
        ("npz", CSRFile(shared / "w.npz", orientation="target_source", use_values=True)),
        ("npz_compressed", CSRFile(shared / "wz.npz", orientation="target_source")),
        ("npy", CSRFile(shared / "npy", orientation="target_source", shape=(30, 25))),
        ("parquet", ParquetEdges(shared / "edges.parquet", source="pre", target="post",
                                 shape=(30, 25), weight="w")),
    ):
        layer = ShardedSparseLinear(25, 30, src, dtype=torch.float64, group=group)
        sd = consolidated_state_dict(layer)
        if rank == 0:
            same = torch.equal(sd["col_indices"], expected["col"]) and torch.equal(
                sd["crow_indices"], expected["crow"])
            if name in ("npz", "parquet"):
                same = same and torch.allclose(sd["weight"], expected["values"])
            out[name] = same
    return out


def consolidate(rank: int, world: int, shared: Path, group) -> dict:
    ref = single(pattern(), 8)
    layer = ShardedSparseLinear.from_sparse_linear(ref, group=group)
    whole = to_sparse_linear(layer)
    same = None
    if rank == 0:
        same = torch.equal(whole.weight, ref.weight) and torch.equal(whole.bias, ref.bias)
    # and back: a fresh sharded layer takes the single-process state dict
    fresh = ShardedSparseLinear(17, 23, pattern(), dtype=torch.float64, group=group)
    load_consolidated_state_dict(fresh, ref.state_dict())
    e0, e1 = fresh.output_partition.edges(rank)
    back = torch.equal(fresh.weight, ref.weight[e0:e1])
    other = single(pattern(seed=9))
    try:
        load_consolidated_state_dict(fresh, other.state_dict())
        refused = None
    except Exception as exc:
        refused = type(exc).__name__
    # node names go with the rows and come back whole
    named = single(pattern().with_names([f"out{i}" for i in range(23)],
                                        [f"in{i}" for i in range(17)]), 8)
    sharded = ShardedSparseLinear.from_sparse_linear(named, group=group)
    back_named = to_sparse_linear(sharded)
    names = None
    if rank == 0:
        names = (back_named.out_names == named.out_names
                 and back_named.in_names == named.in_names)
    renamed = single(pattern().with_names([f"x{i}" for i in range(23)], None), 8)
    other_names = _error_of(lambda: load_consolidated_state_dict(sharded, renamed.state_dict()))
    return {"same": same, "back": back, "refused": refused, "names": names,
            "rows_named": sharded.out_names == named.out_names[slice(*sharded.rows)],
            "other_names": other_names}


def _model(seed: int, group) -> torch.nn.Sequential:
    r1, r2 = single(pattern(23, 17, 0), seed), single(pattern(11, 23, 4), seed + 1)
    l1 = ShardedSparseLinear.from_sparse_linear(r1, group=group)
    l2 = ShardedSparseLinear.from_sparse_linear(r2, input_partition=l1.output_partition,
                                                group=group)
    return torch.nn.Sequential(l1, torch.nn.Tanh(), l2)


def _train(model, opt, steps: range) -> None:
    """Adam steps of ``(model(x) ** 2).sum()`` on seeded inputs; the sharded model's loss on
    each rank covers its rows, so the gradients are those of the single-process loss."""
    for step in steps:
        x = torch.randn(5, 17, dtype=torch.float64,
                        generator=torch.Generator().manual_seed(40 + step))
        (model(x) ** 2).sum().backward()
        opt.step()
        opt.zero_grad()


def _reference(steps: int):
    """The single-process model and its Adam after ``steps`` steps."""
    r1, r2 = single(pattern(23, 17, 0), 20), single(pattern(11, 23, 4), 21)
    model = torch.nn.Sequential(r1, torch.nn.Tanh(), r2)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    _train(model, opt, range(steps))
    return model, opt


def dcp_save(rank: int, world: int, shared: Path, group) -> dict:
    save_checkpoint(_model(20, group), shared / "dcp")
    model = _model(20, group)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    _train(model, opt, range(2))
    save_checkpoint(model, shared / "dcp-adam", optimizer=opt)
    return {}


def dcp_load(rank: int, world: int, shared: Path, group) -> dict:
    model = _model(30, group)  # other values, same wiring
    load_checkpoint(model, shared / "dcp")
    saved = (single(pattern(23, 17, 0), 20), single(pattern(11, 23, 4), 21))
    same = True
    for layer, ref in zip((model[0], model[2]), saved):
        e0, e1 = layer.output_partition.edges(rank)
        s0, s1 = layer.rows
        same &= torch.equal(layer.to_canonical(layer.weight), ref.weight[e0:e1])
        same &= torch.equal(layer.bias, ref.bias[s0:s1])
    wrong = torch.nn.Sequential(
        ShardedSparseLinear.from_sparse_linear(single(pattern(23, 17, 5), 1), group=group),
        torch.nn.Tanh(),
        model[2])
    try:
        load_checkpoint(wrong, shared / "dcp")
        refused = None
    except Exception as exc:
        refused = type(exc).__name__
    no_state = _error_of(lambda: load_checkpoint(
        model, shared / "dcp", optimizer=torch.optim.Adam(model.parameters())))
    return {"same": bool(same), "refused": refused, "no_state": no_state,
            **_resumed(rank, group, shared)}


def _resumed(rank: int, group, shared: Path) -> dict:
    """Model and Adam state saved after 2 steps on 2 ranks, loaded on 3: the state equals the
    single-process optimizer's, and a third step gives the single-process weights."""
    model = _model(30, group)
    opt = torch.optim.Adam(model.parameters(), lr=0.5)  # lr comes from the checkpoint
    load_checkpoint(model, shared / "dcp-adam", optimizer=opt)
    ref, ref_opt = _reference(2)
    state_diff = 0.0
    for layer, r in zip((model[0], model[2]), (ref[0], ref[2])):
        (e0, e1), (s0, s1) = layer.output_partition.edges(rank), layer.rows
        for key in ("exp_avg", "exp_avg_sq"):
            mine = layer.to_canonical(opt.state[layer.weight][key])
            state_diff = max(state_diff, _max_diff(mine, ref_opt.state[r.weight][key][e0:e1]))
            state_diff = max(state_diff, _max_diff(opt.state[layer.bias][key],
                                                   ref_opt.state[r.bias][key][s0:s1]))
        assert float(opt.state[layer.weight]["step"]) == 2.0
    _train(model, opt, range(2, 3))
    _train(ref, ref_opt, range(2, 3))
    step_diff = 0.0
    for layer, r in zip((model[0], model[2]), (ref[0], ref[2])):
        (e0, e1), (s0, s1) = layer.output_partition.edges(rank), layer.rows
        step_diff = max(step_diff, _max_diff(layer.to_canonical(layer.weight), r.weight[e0:e1]),
                        _max_diff(layer.bias, r.bias[s0:s1]))
    return {"adam_state": state_diff, "adam_step": step_diff,
            "lr": opt.param_groups[0]["lr"]}


def _error_of(fn) -> str | None:
    try:
        fn()
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def errors(rank: int, world: int, shared: Path, group) -> dict:
    layer = ShardedSparseLinear.from_sparse_linear(single(pattern(), 1), group=group)
    sharded = ShardedSparseLinear.from_sparse_linear(single(pattern(11, 23, 4), 2), group=group,
                                                     input_partition=layer.output_partition)
    width = 17 if rank == 0 else 16  # only rank 1.. is wrong
    out = {
        "width": _error_of(lambda: layer(torch.randn(2, width, dtype=torch.float64))),
        "sharding": _error_of(lambda: sharded(torch.randn(2, 23, dtype=torch.float64))),
        "batch": _error_of(lambda: layer(torch.randn(2 + rank, 17, dtype=torch.float64))),
        "not_replicated": _error_of(lambda: layer(torch.full((2, 17), float(rank),
                                                             dtype=torch.float64))),
        "seed": _error_of(lambda: ShardedSparseLinear(
            30, 40, RandomBlocks(40, 30, nnz=100, seed=rank, block_rows=2), group=group)),
        "too_many_ranks": _error_of(lambda: ShardedSparseLinear(
            4, 1, Connectivity.tril(1, 4), group=group)),
        "missing_file": _error_of(lambda: ShardedSparseLinear(
            25, 30, CSRFile(shared / ("w.npz" if rank == 0 else "nope.npz"),
                            orientation="target_source"), group=group)),
    }
    # the group still works after every refusal
    y = layer(torch.ones(1, 17, dtype=torch.float64))
    out["still_works"] = y.shape == (1, layer.local.out_features)
    return out


def nccl_matches_single(rank: int, world: int, shared: Path, group) -> dict:
    """The same comparison with the layers on GPUs (NCCL) and the reference on the CPU."""
    conn = pattern()
    ref = single(conn)
    c1 = ShardedSparseLinear.from_sparse_linear(ref, device=f"cuda:{rank}", group=group)
    c2 = ShardedSparseLinear.from_sparse_linear(single(pattern(11, 23, 4), 2),
                                                device=f"cuda:{rank}", gather_output=True,
                                                input_partition=c1.output_partition, group=group)
    x = torch.randn(6, 17, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    xs = x.to(f"cuda:{rank}").requires_grad_()
    xr = x.clone().requires_grad_()
    y = c2(torch.tanh(c1(xs)))
    yr = single(pattern(11, 23, 4), 2)(torch.tanh(ref(xr)))
    y.sum().backward()
    yr.sum().backward()
    return {"diffs": {"forward": _max_diff(y.cpu(), yr),
                      "grad_input": _max_diff(xs.grad.cpu(), xr.grad)}}


def _step_memory(rank: int, world: int, group, layout: str) -> dict:
    """Two training steps' increase in this rank's resident memory (the allocator returning
    freed blocks), beside what memory.estimate_sharded says training adds: gradients, the
    optimizer's state, the output, the kernels' and the collectives' temporaries (the input and
    the output's gradient exist before)."""
    from sparselinear import memory

    memory.follow_live_memory()
    n, batch = 100_000, 32
    sharded = layout == "sharded"
    layer = ShardedSparseLinear(n, n, RandomBlocks(n, n, nnz=200_000, seed=0), group=group,
                                mode="sparse", input_partition="output" if sharded else None)
    opt = torch.optim.Adam(layer.parameters(), fused=True)
    width = layer.input_partition.sizes()[rank] if sharded else n
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, width, generator=g).requires_grad_()
    grad_y = torch.randn(batch, layer.local.out_features, generator=g)  # no loss temporaries

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        x.grad = None
        layer(x).backward(grad_y)
        opt.step()

    # From before the first step, so that a buffer a collective keeps from one step to the
    # next (gloo's, on some ranks) counts either way; the optimizer's state is made in it.
    memory.release_free_memory()
    with memory.track_peak("cpu") as m:
        step()
        step()
    est = memory.estimate_sharded(layer, world_size=world, batch_size=batch, optimizer=opt)
    module = memory.estimate(torch.nn.Sequential(layer), batch_size=batch, optimizer=opt,
                             input_requires_grad=True)
    own = est.ranks[rank].layers[0].sparse
    added = (own["gradients"] + own["optimizer_state"] + own["activations"] + own["working"]
             - est.sides[rank].input)
    return {"measured": m.increase, "estimated": added, "pieces": est.sides[rank].pieces,
            "compiled": kernels.extension_enabled(layer.weight),
            "module_is_the_rank": module.total == est.ranks[rank].total}


def memory_sharded_input(rank: int, world: int, shared: Path, group) -> dict:
    """The compiled kernels (as the benchmark), several pieces."""
    previous = ring_module.PIECE_BYTES
    ring_module.PIECE_BYTES = 1 << 20
    try:
        with kernels.use_backend("auto"):
            return _step_memory(rank, world, group, "sharded")
    finally:
        ring_module.PIECE_BYTES = previous


def memory_replicated_input(rank: int, world: int, shared: Path, group) -> dict:
    with kernels.use_backend("auto"):
        return _step_memory(rank, world, group, "replicated")
