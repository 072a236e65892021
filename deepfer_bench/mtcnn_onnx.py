"""Does ONNX Runtime run MTCNN's P/R/O-Nets faster than PyTorch on this CPU? A measurement, not a feature.

The detector (``detectors.mtcnn``, the configured settings, channels-last nets as in production) runs on real
frames of a video; every input its three networks receive is recorded. The nets are exported to ONNX (free
batch and, for P-Net, free height and width) and the recorded inputs are replayed through both runtimes in
interleaved rounds, so outside load falls on both alike. The whole ``detect`` call is timed too, to show what
share of detection the networks are.

Usage: python -m deepfer_bench.mtcnn_onnx --source ../shared/media/woman2.mp4
    --out deepfer_bench/results/mtcnn_onnx_cpu.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from deepfer_bench.machine import machine_info
from deepfer_core.settings import DetectorSettings
from detectors.mtcnn import MtcnnDetector


def read_frames(path: str, count: int) -> list[np.ndarray]:
    import av

    frames = []
    with av.open(path) as container:
        for frame in container.decode(video=0):
            frames.append(frame.to_ndarray(format="rgb24"))
            if len(frames) == count:
                break
    return frames


def record_inputs(det: MtcnnDetector, frames: list[np.ndarray], batch: int) -> dict[str, list[torch.Tensor]]:
    """Every input tensor each net gets while ``det`` detects ``frames`` in batches of ``batch``."""
    seen: dict[str, list[torch.Tensor]] = {"pnet": [], "rnet": [], "onet": []}
    hooks = [getattr(det.mtcnn, n).register_forward_pre_hook(lambda m, a, n=n: seen[n].append(a[0].detach().clone()))
             for n in seen]
    for start in range(0, len(frames), batch):
        det.detect(frames[start : start + batch])
    for h in hooks:
        h.remove()
    return seen


def time_detect(det: MtcnnDetector, frames: list[np.ndarray], batch: int) -> float:
    t0 = time.perf_counter()
    for start in range(0, len(frames), batch):
        det.detect(frames[start : start + batch])
    return time.perf_counter() - t0


def export(net: torch.nn.Module, example: torch.Tensor, free: list[int], path: Path) -> None:
    """``net`` as a one-file ONNX model whose axes ``free`` are dynamic (batch; and height/width for P-Net)."""
    net = net.to(memory_format=torch.contiguous_format)
    dims = {i: torch.export.Dim(f"d{i}", min=2 if i == 0 else 12) for i in free}
    program = torch.onnx.export(net, (example,), dynamo=True, input_names=["x"], dynamic_shapes=(dims,),
                                external_data=False, verbose=False)
    assert program is not None, "the dynamo exporter returns its program"
    program.save(str(path))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--frames", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0, help="torch and ONNX Runtime threads (0: each one's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    settings = DetectorSettings(device="cpu")
    det = MtcnnDetector(settings)
    frames = read_frames(args.source, args.frames)
    det.detect(frames[: settings.batch_size])  # warm-up
    inputs = record_inputs(det, frames, settings.batch_size)
    nets = {n: getattr(det.mtcnn, n) for n in inputs}

    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    sessions, parity = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, net in nets.items():
            path = Path(tmp) / f"{name}.onnx"
            example = torch.cat([inputs[name][0][:1]] * 2).contiguous()
            export(net, example, [0, 2, 3] if name == "pnet" else [0], path)
            net.to(memory_format=torch.channels_last)  # back as the detector runs it
            sessions[name] = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    for name, net in nets.items():
        worst = 0.0
        with torch.inference_mode():
            for x in inputs[name]:
                ref = net(x)
                got = sessions[name].run(None, {"x": x.numpy()})
                worst = max(worst, max(float(np.abs(r.numpy() - g).max()) for r, g in zip(ref, got)))
        parity[name] = worst

    def run_torch(name: str) -> float:
        t0 = time.perf_counter()
        with torch.inference_mode():
            for x in inputs[name]:
                nets[name](x)
        return time.perf_counter() - t0

    def run_ort(name: str) -> float:
        arrays = [x.numpy() for x in inputs[name]]
        t0 = time.perf_counter()
        for x in arrays:
            sessions[name].run(None, {"x": x})
        return time.perf_counter() - t0

    rounds: dict[str, list[float]] = {f"{r}/{n}": [] for n in nets for r in ("torch", "onnxruntime")}
    detect_times = []
    for _ in range(args.rounds):
        detect_times.append(time_detect(det, frames, settings.batch_size))
        for name in nets:
            rounds[f"torch/{name}"].append(run_torch(name))
            rounds[f"onnxruntime/{name}"].append(run_ort(name))
    per_net = {}
    for name in nets:
        t, o = np.array(rounds[f"torch/{name}"]), np.array(rounds[f"onnxruntime/{name}"])
        per_net[name] = {
            "calls": len(inputs[name]),
            "input_shapes": sorted({tuple(x.shape) for x in inputs[name]})[:6],
            "torch_s_median": float(np.median(t)),
            "onnxruntime_s_median": float(np.median(o)),
            "speedup_median_of_rounds": float(np.median(t / o)),
            "speedup_rounds": (t / o).round(3).tolist(),
            "max_abs_output_diff": parity[name],
        }
    torch_total = sum(per_net[n]["torch_s_median"] for n in nets)
    ort_total = sum(per_net[n]["onnxruntime_s_median"] for n in nets)
    result = {
        "benchmark": "mtcnn_nets_onnxruntime_vs_torch",
        "source": args.source,
        "frames": len(frames),
        "detector_batch": settings.batch_size,
        "max_side": settings.max_side,
        "rounds": args.rounds,
        "threads": args.threads,
        "onnxruntime": ort.__version__,
        "detect_s_median": round(float(np.median(detect_times)), 3),
        "nets": per_net,
        "nets_torch_s": round(torch_total, 4),
        "nets_onnxruntime_s": round(ort_total, 4),
        "nets_share_of_detect": round(torch_total / float(np.median(detect_times)), 3),
        "detect_s_if_nets_ran_in_onnxruntime": round(float(np.median(detect_times)) - torch_total + ort_total, 3),
        "machine": machine_info(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    for name, r in per_net.items():
        print(
            f"{name}: {r['calls']} calls, torch {r['torch_s_median'] * 1000:.1f} ms, onnxruntime "
            f"{r['onnxruntime_s_median'] * 1000:.1f} ms, speed-up {r['speedup_median_of_rounds']:.2f}x, "
            f"max |diff| {r['max_abs_output_diff']:.2g}"
        )
    print(
        f"detect() on {len(frames)} frames: {np.median(detect_times):.2f} s, of which the nets {torch_total:.2f} s "
        f"({result['nets_share_of_detect']:.0%}); with ONNX Runtime nets about "
        f"{result['detect_s_if_nets_ran_in_onnxruntime']:.2f} s"
    )


if __name__ == "__main__":
    main()
