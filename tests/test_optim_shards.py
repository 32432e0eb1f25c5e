"""A sharded run's optimizer state on disk (engine.training.optim_shards): one safetensors file
per process, rows split as torch.chunk splits them, read back on any number of processes.
The torchrun runs that write and resume them are in test_distributed.py."""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from llmtui.engine.errors import CheckpointError
from llmtui.engine.training import optim_shards
from llmtui.engine.training.optim_shards import ShardReader, build_index, chunk_rows, read_index


def write_shards(directory, tensors: dict, world: int) -> optim_shards.ShardIndex:
    """`tensors` saved as a run of `world` FSDP processes saves them (torch.chunk rows)."""
    index = build_index(world, {name: (tuple(t.shape), t.dtype) for name, t in tensors.items()})
    for rank in range(world):
        save_file({name: t.chunk(world)[rank].contiguous() if rank < len(t.chunk(world))
                   else t[:0].contiguous() for name, t in tensors.items()},
                  directory / index.files[rank])
    (directory / optim_shards.INDEX).write_text(json.dumps(index.to_json()))
    return index


@pytest.mark.unit
def test_rows_written_by_one_number_of_processes_are_read_by_any_other(tmp_path):
    """Each process of a resume on another world size reads exactly its torch.chunk rows of
    every tensor, as slices of whichever files hold them, ranks with no rows included (3 rows
    over 4 processes); on the same world size a rank reads its own file alone."""
    torch.manual_seed(0)
    tensors = {"optimizer.0.exp_avg": torch.randn(7, 5), "optimizer.1.exp_avg_sq": torch.rand(3),
               "optimizer.2.exp_avg": torch.randn(11, 2, 3).to(torch.bfloat16)}
    index = write_shards(tmp_path, tensors, 3)
    assert index.tensors["optimizer.0.exp_avg"].rows == ((0, 3), (3, 6), (6, 7))
    index = read_index(json.loads((tmp_path / optim_shards.INDEX).read_text()), "optim-index.json")
    for world in (1, 2, 3, 4, 5):
        for rank in range(world):
            with ShardReader(tmp_path, index) as reader:
                for name, whole in tensors.items():
                    start, stop = chunk_rows(whole.shape[0], world, rank)
                    part = reader.rows(name, start, stop)
                    chunks = whole.chunk(world)
                    expected = chunks[rank] if rank < len(chunks) else whole[:0]
                    assert part.dtype == whole.dtype and torch.equal(part, expected), (world, rank, name)
                if world == 3:
                    assert set(reader._open) == {rank}   # its own file, no other
    with ShardReader(tmp_path, index) as reader:
        assert all(torch.equal(reader.whole()[n], t) for n, t in tensors.items())


@pytest.mark.unit
@pytest.mark.parametrize("damage, says", [
    (lambda d: d.update(version=2), '"version" = 2 is not supported'),
    (lambda d: d.update(world_size=3), '"files" must name'),
    (lambda d: d["tensors"]["optimizer.0.exp_avg"].update(rows=[[0, 3], [4, 7]]), "without gaps"),
    (lambda d: d["tensors"]["optimizer.0.exp_avg"].update(rows=[[0, 3], [3, 6]]), "end at row 6"),
    (lambda d: d["tensors"]["optimizer.0.exp_avg"].update(dtype="object"), "is not one of"),
    (lambda d: d["tensors"].update({"../x": {}}), "is not optimizer.<index>.<key>"),
])
def test_a_damaged_index_is_one_line_naming_the_file(tmp_path, damage, says):
    write_shards(tmp_path, {"optimizer.0.exp_avg": torch.zeros(7, 2)}, 2)
    d = json.loads((tmp_path / optim_shards.INDEX).read_text())
    damage(d)
    with pytest.raises(CheckpointError) as refused:
        read_index(d, "optim-index.json")
    assert says in str(refused.value) and str(refused.value).startswith("optim-index.json: ")
    assert "\n" not in str(refused.value)


@pytest.mark.unit
def test_a_shard_file_that_does_not_hold_what_the_index_says_is_refused(tmp_path):
    """A file whose tensor has other rows than the index says, or holds NaN: one line, not a
    crash or a wrong resume."""
    index = write_shards(tmp_path, {"optimizer.0.exp_avg": torch.zeros(7, 2)}, 2)
    save_file({"optimizer.0.exp_avg": torch.zeros(2, 2)}, tmp_path / index.files[1])   # rows 4:7 are 3
    with ShardReader(tmp_path, index) as reader, pytest.raises(CheckpointError, match="the index says rows 4:7"):
        reader.rows("optimizer.0.exp_avg", 0, 7)
    save_file({"optimizer.0.exp_avg": torch.full((3, 2), float("nan"))}, tmp_path / index.files[1])
    with ShardReader(tmp_path, index) as reader, pytest.raises(CheckpointError, match="NaN or infinite"):
        reader.rows("optimizer.0.exp_avg", 4, 7)


def shard_checkpoint(path, world: int) -> None:
    """Rewrite the unsharded checkpoint `path` as a sharded run of `world` processes writes it."""
    from llmtui.engine.training.checkpoint import write_checkpoint_dir

    state = load_file(path / "state.safetensors")
    moments = {k: v for k, v in state.items() if k.startswith("optimizer.") and not k.endswith(".step")}
    files = {f.name: f.read_bytes() for f in path.iterdir()
             if f.name not in ("manifest.json", "state.safetensors")}
    save_file({k: v for k, v in state.items() if k not in moments}, path / "state.safetensors")
    files["state.safetensors"] = (path / "state.safetensors").read_bytes()
    write_shards(path, moments, world)
    for f in [optim_shards.INDEX, *(optim_shards.shard_file(r, world) for r in range(world))]:
        files[f] = (path / f).read_bytes()
    write_checkpoint_dir(path, files)


@pytest.mark.train
def test_sharded_optimizer_state_loads_into_one_process_and_into_fsdp_and_verifies(tiny, tmp_path):
    """A sharded checkpoint verifies (every shard file in the manifest, format version 2), and its
    optimizer state loads whole into one process and, row by row, into an FSDP model (a group of
    one process here: the DTensors the loader builds), as the whole state of an older llmtui's
    FSDP checkpoint still does; a shard file missing from the manifest is refused in one line."""
    import shutil

    import torch.distributed as dist

    from llmtui import load_config
    from llmtui.engine.training import checkpoint as ckpt
    from llmtui.engine.training import sharded
    from llmtui.engine.training.snapshot import optimizer_from_files
    from llmtui.engine.training.trainer import Trainer

    cfg = load_config("cpu", tiny + ['optimizer.name="adamw"', "training.max_steps=2", "eval.every_n_steps=100"])
    result = Trainer(cfg).run()
    last = result.run_dir / "last"
    original = ckpt.load(last)
    shutil.copytree(last, tmp_path / "sharded")
    path = tmp_path / "sharded"
    shard_checkpoint(path, 3)
    assert json.loads((path / "manifest.json").read_text())["format_version"] == 2
    loaded = ckpt.load(path)
    assert loaded.optimizer_shards is not None and loaded.optimizer_shards.world_size == 3

    resumed = Trainer(load_config("cpu", tiny + ['optimizer.name="adamw"', "training.max_steps=4"]),
                      resume_from=path).setup().optimizers.adam
    params = [p for g in resumed.param_groups for p in g["params"]]
    for name, value in original.tensors.items():
        if name.startswith("optimizer."):
            _, i, key = name.split(".")
            assert torch.equal(resumed.state[params[int(i)]][key], value), name

    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        from llmtui.engine.model.gpt import GPT, gpt_config
        from llmtui.engine.model.optim import build_optimizers
        for old_format in (False, True):
            model = GPT(gpt_config(cfg, original.model_state["transformer.wte.weight"].shape[0]))
            sharded.shard(model)
            adam = build_optimizers(model, cfg.optimizer).adam
            if old_format:   # an FSDP checkpoint of an llmtui before optim_shards: the whole state
                state = optimizer_from_files(adam, original.tensors, original.state.optimizer, "state")
                sharded.load_optimizer_state(model, adam, state)
            else:
                with ShardReader(path, loaded.optimizer_shards) as reader:
                    sharded.load_optimizer_shards(model, adam, reader, loaded.tensors, loaded.state.optimizer,
                                                  "state")
            saved = sharded.optimizer_shard(adam, 0, 1)    # and saved again, as they were
            assert saved.whole.keys() == {k for k in original.tensors if k.endswith(".step")}
            assert saved.rows.keys() == loaded.optimizer_shards.tensors.keys()
            for name, rows in saved.rows.items():
                assert torch.equal(rows, original.tensors[name]), name
    finally:
        dist.destroy_process_group()

    manifest = json.loads((path / "manifest.json").read_text())
    del manifest["files"]["optim-rank00002-of-00003.safetensors"]
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match=r"optim-rank00002-of-00003.safetensors: not listed in the manifest"):
        ckpt.verify(path)
