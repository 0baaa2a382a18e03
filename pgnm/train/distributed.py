"""Process-group plumbing: one code path for the deepspeed launcher, torchrun, srun/mpirun and
plain python.

``setup`` resolves the device and the world (``cluster.py``: one source of truth for each),
gives each rank its share of the CPU cores, makes a lone process a world of one on an
in-memory store (no port), binds a world that meets at a loopback address to loopback alone,
and lets DeepSpeed create -- or adopt -- the process group.
"""

from __future__ import annotations

import os
import socket
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.distributed as dist

from pgnm.errors import ConfigError, PeerFailed, PgnmError
from pgnm.train.cluster import (
    is_loopback_rendezvous,
    local_world_size,
    loopback_interface,
    resolve_device,
    world_from_cluster,
)


@dataclass(frozen=True)
class World:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    # Where ranks agree on host-side events (a bad sample) without touching the GPU: a gloo
    # group beside NCCL; None means the default group, already gloo on the CPU.
    control_group: object | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def dali_device_id(self) -> int | None:
        return self.local_rank if self.device.type == "cuda" else None


def share_cpu_cores() -> None:
    """Ranks on one machine share its cores: unless OMP_NUM_THREADS says otherwise, each rank
    takes its share (GPU ranks too: their data loading and host work are CPU threads).
    Oversubscribed cores slow torch's small parallel ops tenfold."""
    if "OMP_NUM_THREADS" in os.environ:
        return
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // max(1, local_world_size())))


@dataclass(frozen=True)
class Placement:
    """Where one rank runs: what ``nodes.json`` lists, one per rank."""

    rank: int
    local_rank: int
    host: str
    pid: int
    scratch: str


def use_node_scratch(scratch_dir: str | None) -> str:
    """Send what a node keeps to itself (temporary files, Triton's kernel cache) to
    ``scratch_dir``; None leaves the node's own ``TMPDIR`` and the libraries' cache folders
    as they are. Returns the temporary folder.

    Node-local on purpose: kernel caches and temporary files written by several nodes into
    one shared home directory race each other, and cost network round trips for data no
    other node reads. Children (DataLoader workers, DALI) inherit it through the environment.
    """
    import tempfile

    if scratch_dir is not None:
        scratch = Path(scratch_dir).resolve()
        scratch.mkdir(parents=True, exist_ok=True)
        os.environ["TMPDIR"] = str(scratch)
        os.environ.setdefault("TRITON_CACHE_DIR", str(scratch / "triton"))
        tempfile.tempdir = None  # re-read TMPDIR
    return tempfile.gettempdir()


def placements(world: World, scratch: str) -> list[Placement]:
    """Every rank's :class:`Placement`, in rank order, on every rank."""
    mine = Placement(world.rank, world.local_rank, socket.gethostname(), os.getpid(), scratch)
    return [Placement(**p) for p in gather_objects(asdict(mine))]  # type: ignore[arg-type]


def setup(device: str = "auto", deterministic: bool = False) -> World:
    """Initialise (or join) the process group; safe to call more than once per process."""
    use_cuda = resolve_device(device, torch.cuda.is_available()) == "cuda"
    os.environ["DS_ACCELERATOR"] = "cuda" if use_cuda else "cpu"
    if use_cuda:
        _choose_kernels(deterministic)
    cluster = world_from_cluster(os.environ)
    if cluster is not None and not dist.is_initialized():
        os.environ.update(cluster)
    # Plain `python launch/...` or a one-rank Tune trial: a world of one. (Ray Train creates
    # the group and the environment itself.)
    alone = "RANK" not in os.environ and not dist.is_initialized()
    if alone:
        os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0")
    share_cpu_cores()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if use_cuda:
        torch.cuda.set_device(local_rank)
    if alone:
        # An in-memory store: no port to pick, so concurrent trials on one node cannot collide.
        dist.init_process_group("nccl" if use_cuda else "gloo", store=dist.HashStore(),
                                rank=0, world_size=1)
    elif not dist.is_initialized() and is_loopback_rendezvous():
        _init_on_loopback(use_cuda)
    import deepspeed
    from deepspeed.accelerator import get_accelerator

    chosen = get_accelerator().device_name()
    if chosen != ("cuda" if use_cuda else "cpu"):  # DeepSpeed picked its accelerator earlier
        raise ConfigError(f"DeepSpeed's accelerator is already {chosen} in this process, but "
                          f"this run is on {'cuda' if use_cuda else 'cpu'}")
    # Creates the group from the launcher's environment, or adopts the one that exists (ours
    # above, or Ray Train's); a no-op when DeepSpeed has already done either.
    deepspeed.init_distributed(dist_backend="nccl" if use_cuda else "gloo")
    if not use_cuda and dist.get_world_size() > 1:
        _unlink_shm_allreduce_segment(dist.get_rank())
    control = None
    if dist.get_backend() != "gloo" and dist.get_world_size() > 1:
        control = dist.new_group(backend="gloo")
    return World(
        rank=dist.get_rank(),
        world_size=dist.get_world_size(),
        local_rank=local_rank,
        device=torch.device("cuda", local_rank) if use_cuda else torch.device("cpu"),
        control_group=control,
    )


def _init_on_loopback(use_cuda: bool) -> None:
    """A world that meets at a loopback address, created on loopback alone.

    torch's TCPStore server listens on every interface whatever ``MASTER_ADDR`` says, and gloo
    and NCCL on the address the host name resolves to. So rank 0 opens the listening socket on
    127.0.0.1 itself and hands it to the store, and the collectives get the loopback
    interface. torchrun's workers meet in their agent's store instead (its endpoint is the
    user's ``--rdzv-endpoint``); they only get the interface.
    """
    env = os.environ
    interface = loopback_interface()
    if interface is not None:
        env.setdefault("GLOO_SOCKET_IFNAME", interface)
        if use_cuda:
            env.setdefault("NCCL_SOCKET_IFNAME", interface)
    if env.get("TORCHELASTIC_USE_AGENT_STORE") == "True":
        return
    from torch.distributed.constants import default_pg_timeout

    rank, world_size, port = int(env["RANK"]), int(env["WORLD_SIZE"]), int(env["MASTER_PORT"])
    listening = None
    if rank == 0:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # as torch's own store does: a relaunch on the same port must not wait out TIME_WAIT
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
            sock.listen(max(128, world_size))
        except OSError as err:
            sock.close()
            raise ConfigError(f"MASTER_PORT={port}: cannot listen on 127.0.0.1 ({err.strerror}); "
                              "another job holds the port: give the launcher another "
                              "--master_port") from None
        listening = sock.detach()  # the store owns the descriptor from here on
    store = dist.TCPStore("127.0.0.1", port, world_size, rank == 0, timeout=default_pg_timeout,
                          wait_for_workers=False, master_listen_fd=listening)
    dist.init_process_group("nccl" if use_cuda else "gloo", store=store, rank=rank,
                            world_size=world_size, timeout=default_pg_timeout)


def _choose_kernels(deterministic: bool) -> None:
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS's condition
        torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cudnn.benchmark = not deterministic  # the official code autotunes


def _unlink_shm_allreduce_segment(rank: int) -> None:
    """Drop the name of DeepSpeed's CPU all-reduce segment once every rank has mapped it.

    DeepSpeed's CPU ``shm_comm`` op gives each rank a 66 MB segment in /dev/shm and never
    unlinks it, so every multi-rank CPU run left 66 MB per rank in RAM until reboot (a test
    suite filled /dev/shm and Ray's OOM killer started killing workers). ``init_distributed``
    returns only after this rank has mapped every peer's segment, so after a barrier no rank
    opens a segment by name again; the mappings themselves stay valid until the processes
    exit, which is when the kernel frees the memory, crash or not.
    """
    shm = Path("/dev/shm")
    if not shm.is_dir():  # not Linux: DeepSpeed's op is not built there either
        return
    dist.barrier()
    env = os.environ
    name = (f"deepspeed_allreduce_buffer_{os.getuid()}_{env.get('MASTER_ADDR', '')}_"
            f"{env.get('MASTER_PORT', '')}_{rank}")
    (shm / name).unlink(missing_ok=True)  # absent when DeepSpeed chose plain gloo


def average_(tensors: list[torch.Tensor], totals: list[torch.Tensor] | None = None,
             count: int = 1) -> None:
    """In-place mean across ranks (running statistics that must agree everywhere).

    ``totals``: each rank's float64 sums of ``count`` values of each tensor, used in place of
    the tensors themselves (an accumulation window's updates); summed over the ranks in
    float64 too, so the mean is rounded to the tensors' dtype once.
    """
    world = dist.get_world_size()
    if not tensors or (world == 1 and totals is None):
        return
    if totals is None:
        totals = [t.detach().double() for t in tensors]
    flat = torch.cat([t.reshape(-1) for t in totals])
    if world > 1:
        dist.all_reduce(flat)
    flat /= count * world
    offset = 0
    for t in tensors:
        t.copy_(flat[offset : offset + t.numel()].view_as(t).to(t.dtype))
        offset += t.numel()


def tree_sum_(flat: torch.Tensor) -> bool:
    """In-place sum across ranks in one fixed order, or False (nothing done) when the world
    size is no power of two.

    Recursive doubling: in round k each rank swaps its partial sum with the rank 2**k away and
    adds the two, so every rank ends with the same bits, summed as a balanced tree over the
    ranks in order, ((r0 + r1) + (r2 + r3)): the order a pairwise sum over all the ranks'
    slots gives. A ring all-reduce adds in an order that depends on the world size.
    """
    world, rank = dist.get_world_size(), dist.get_rank()
    if world & (world - 1):
        return False
    other, distance = torch.empty_like(flat), 1
    while distance < world:
        partner = rank ^ distance
        for request in dist.batch_isend_irecv([dist.P2POp(dist.isend, flat, partner),
                                               dist.P2POp(dist.irecv, other, partner)]):
            request.wait()
        flat.add_(other)  # a + b == b + a: both partners hold the same sum
        distance *= 2
    return True


def broadcast_from_rank0_(tensors: list[torch.Tensor]) -> None:
    """In-place copy of rank 0's values to every rank, one collective per dtype."""
    if dist.get_world_size() == 1 or not tensors:
        return
    by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
    for t in tensors:
        by_dtype.setdefault(t.dtype, []).append(t)
    for group in by_dtype.values():
        flat = torch.cat([t.detach().reshape(-1) for t in group])
        dist.broadcast(flat, src=0)
        offset = 0
        for t in group:
            t.copy_(flat[offset : offset + t.numel()].view_as(t))
            offset += t.numel()


def first_failing_rank(failed: bool, world: World) -> int | None:
    """The lowest rank that reports ``failed``, agreed by all ranks (None if none did)."""
    if world.world_size == 1:
        return 0 if failed else None
    flag = torch.tensor([world.rank if failed else world.world_size])  # host memory
    dist.all_reduce(flag, op=dist.ReduceOp.MIN, group=world.control_group)
    rank = int(flag.item())
    return None if rank == world.world_size else rank


def stop_together(problem: PgnmError | None, world: World, where: str) -> None:
    """Every rank learns whether any rank failed, and all raise at once: the failing rank its
    own error, the others :class:`PeerFailed`. No rank is left waiting in a collective for a
    peer that has gone, which gloo would report as a traceback about a closed connection."""
    bad = first_failing_rank(problem is not None, world)
    if problem is not None:
        raise problem
    if bad is not None:
        raise PeerFailed(f"{where}: rank {bad} failed (its message says why); stopping with it")


def gather_objects(obj: object) -> list[object]:
    """Every rank's ``obj``, in rank order, on every rank."""
    if dist.get_world_size() == 1:
        return [obj]
    out: list[object] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def barrier() -> None:
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()
