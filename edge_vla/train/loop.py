"""The trainer: behaviour cloning from the teacher with a curriculum, DAgger rounds, checkpoints, curve.

Run folder (``--out runs/NAME``; runs/ is gitignored, nothing here goes in git):

    train_config.json   the configuration (fixed at the first run; --resume reuses it)
    checkpoint/         save_pretrained() student (what ``edge-vla export`` reads)
                        + train_state.pt (optimizer, pointer head, counters, DAgger states)
    curve.jsonl         one line per evaluation: held-out hit rates vs samples seen and compute

Determinism: batch ``k`` is the samples of stream states ``k*B .. k*B+B-1`` (pure
functions of the seed and the index), DAgger picks come from an rng keyed by the
step, and DAgger states are stored as (world spec, action history) that replay
exactly. So a resumed run continues with the same next batch and the same loss.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch

from ..actions import Action
from ..export.student import EdgeVlaStudent
from ..sim.defects import compress
from .data import (Curriculum, Sample, Stream, last_click, make_samples, readable, replay, state_samples,
                   world_spec)
from .evaluate import crop_grounding, grounding, grounding_cases
from .model import (PointerHead, TorchRuntime, action_vocab, batch_loss, build_student, collate, grid_size,
                    init_from, prompt_layout)

CKPT, STATE, CURVE, CONFIG = "checkpoint", "train_state.pt", "curve.jsonl", "train_config.json"


@dataclass
class TrainConfig:
    preset: str = "small"
    seed: int = 0
    batch_states: int = 8              # states per batch; samples per batch = batch_states * samples_per_state
    samples_per_state: int = 2
    lr: float = 6e-4
    weight_decay: float = 0.01
    warmup_steps: int = 100
    schedule_samples: int = 400_000    # cosine decay horizon (a full run)
    aux_weight: float = 1.0            # the pointer loss: what broke the plateau in the field notes
    bin_sigma: float = 2.0             # Gaussian soft targets over coordinate bins (0: hard labels)
    attn_weight: float = 1.0           # supervise one decoder head to attend to the target's cells
    read_weight: float = 0.0           # the reading loss: letters written in each image token's cell
    curriculum_samples: int = 40_000
    eval_every: int = 2000             # samples between held-out evaluations
    eval_cases: int = 48               # held-out crop cases (native-scale crop holding the target)
    eval_full_cases: int = 16          # held-out full screens through the two-stage RoI path
    dagger_start: int = 20_000         # samples before the first DAgger round (BC first)
    dagger_every: int = 5_000
    dagger_tasks: int = 8              # closed-loop episodes per round
    dagger_max_steps: int = 10
    dagger_beta: float = 0.3           # chance of executing the teacher's action instead of the student's
    dagger_frac: float = 0.25          # share of each batch drawn from DAgger states once there are some
    dagger_buffer: int = 4000          # DAgger states kept (each a spec + action history: a few hundred bytes)
    workers: int = 0                   # data processes (0: generate in the training process)
    threads: int = 2
    device: str = "cpu"
    teacher_bundle: str | None = None
    init_from: str | None = None       # start from the matching weights of another checkpoint

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


class Trainer:
    RUNTIME_KEYS = ("workers", "threads", "device", "eval_every", "eval_cases", "eval_full_cases")

    def __init__(self, out: str | Path, cfg: TrainConfig | None = None, resume: bool = False, log=print,
                 given: set[str] | None = None):
        """``given``: the fields of ``cfg`` set on purpose (a command line's flags); on resume only those
        runtime keys replace the run's own (None: all of them)."""
        self.out = Path(out)
        self.log = log
        ck = self.out / CKPT
        if resume and (self.out / CONFIG).is_file():
            saved = TrainConfig.from_dict(json.loads((self.out / CONFIG).read_text()))
            if cfg is not None:  # how to run may change between machines; what to learn may not
                for k in self.RUNTIME_KEYS:
                    if given is None or k in given:
                        setattr(saved, k, getattr(cfg, k))
            cfg = saved
        elif not resume and ck.exists():
            raise FileExistsError(f"{self.out} already holds a run; pass --resume or pick another --out")
        self.cfg = cfg = cfg or TrainConfig()
        torch.set_num_threads(max(1, cfg.threads))
        self.device = torch.device(cfg.device)
        self.vocab = action_vocab()
        if resume and ck.is_dir():
            self.model = EdgeVlaStudent.from_pretrained(str(ck), local_files_only=True, dtype=torch.float32)
            self.model.config._attn_implementation = "sdpa"
            state = torch.load(ck / STATE, map_location="cpu", weights_only=False)
        else:
            self.model = build_student(cfg.preset, cfg.seed)
            state = None
            if cfg.init_from:
                fresh = init_from(self.model, cfg.init_from)
                self.log(json.dumps({"init_from": cfg.init_from, "fresh": fresh}))
        self.model.to(self.device).train()
        torch.manual_seed(cfg.seed + 1)
        self.head = PointerHead(self.model.config.text_config.hidden_size).to(self.device)
        params = list(self.model.parameters()) + list(self.head.parameters())
        self.opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.98))
        self.step_n = self.seen = self.state_index = 0
        self.wall_s = self.cpu_s = 0.0
        self.dagger: list[dict] = []
        self.dagger_rounds = 0
        self.next_eval = cfg.eval_every
        self.next_dagger = cfg.dagger_start
        if state is not None:
            missing = self.head.load_state_dict(state["head"], strict=False).missing_keys
            if missing:  # a run from before a head was added: its optimizer moments no longer line up
                self.log(json.dumps({"resume_fresh_head": missing, "optimizer": "restarted"}))
            else:
                self.opt.load_state_dict(state["optimizer"])
            for k in ("step_n", "seen", "state_index", "wall_s", "cpu_s", "dagger", "dagger_rounds",
                      "next_eval", "next_dagger"):
                setattr(self, k, state[k])
        self.teacher = None
        if cfg.teacher_bundle:
            from .teacher import BundleTeacher
            self.teacher = BundleTeacher(cfg.teacher_bundle, self.vocab, threads=1)
        vc = self.model.config.vision_config
        self.image_size, self.grid = vc.image_size, grid_size(self.model)
        self.prompt = prompt_layout(self.model)
        self.stream = Stream(self.vocab, self.image_size, self.grid, seed=cfg.seed, split="train",
                             curriculum=Curriculum(cfg.curriculum_samples), teacher=self.teacher,
                             samples_per_state=cfg.samples_per_state)
        self._workers = None
        self._prefetch = None
        self.out.mkdir(parents=True, exist_ok=True)
        if not (self.out / CONFIG).is_file():
            (self.out / CONFIG).write_text(json.dumps(asdict(cfg), indent=2) + "\n")

    # ------------------------------------------------------------------ data
    def _pool(self):
        if self._workers is None:
            import multiprocessing as mp
            # fork is safe: workers render with numpy/Pillow only, never torch
            self._workers = mp.get_context("spawn" if self.cfg.device != "cpu" else "fork").Pool(self.cfg.workers)
        return self._workers

    def _stream_job(self, first: int, count: int, seen: int):
        """States ``first..first+count-1`` rendered by the workers while the model trains (None: inline)."""
        if self.cfg.workers <= 0 or self.teacher is not None:
            return None
        args = [(self.stream, i, seen) for i in range(first, first + count)]
        return self._pool().map_async(state_samples, args, chunksize=max(1, count // (2 * self.cfg.workers)))

    def next_batch(self) -> list[Sample]:
        """Batch ``k``: the next stream states (+ DAgger states once there are some). The stream part of
        the following batch is already being rendered (same indices and curriculum point as without
        prefetching, so a run is the same with or without workers)."""
        cfg = self.cfg
        n_states = cfg.batch_states
        rng = random.Random(f"edge-vla-train:{cfg.seed}:dagger-pick:{self.step_n}")
        n_dagger = 0
        if self.dagger and cfg.dagger_frac > 0:
            n_dagger = min(n_states - 1, int(round(n_states * cfg.dagger_frac)))
        n_stream = n_states - n_dagger
        key = (self.state_index, n_stream, self.seen)
        if self._prefetch is not None and self._prefetch[0] == key:
            batches = self._prefetch[1].get()
        else:
            job = self._stream_job(*key)
            batches = job.get() if job is not None else [state_samples((self.stream, i, self.seen))
                                                         for i in range(self.state_index,
                                                                        self.state_index + n_stream)]
        self.state_index += n_stream
        nxt = (self.state_index, n_stream, self.seen + n_states * cfg.samples_per_state)
        job = self._stream_job(*nxt)
        self._prefetch = (nxt, job) if job is not None else None
        out: list[Sample] = [s for samples in batches for s in samples]
        for _ in range(n_dagger):
            out.extend(self.dagger_samples(rng.choice(self.dagger), rng))
        return out

    def dagger_samples(self, rec: dict, rng: random.Random) -> list[Sample]:
        world = replay(rec["spec"], rec["history"])
        frame = world.render()
        if rng.random() < 0.3:
            frame = compress(frame, rng.randint(40, 90))
        action, box = self.stream.label(world, frame)
        action = action or Action(type="wait")
        cur = self.stream.curriculum.at(self.seen)
        stages = tuple(rng.choice(("crop", "global")) for _ in range(self.cfg.samples_per_state))
        return make_samples(frame, world.instruction, action, box, grammar=self.stream.grammar,
                            image_size=self.image_size, grid=self.grid, rng=rng, cur=cur, stages=stages,
                            meta={"dagger": True, "spec": rec["spec"]}, texts=readable(world.elements),
                            after=last_click(rec["history"]))

    # ------------------------------------------------------------------ optimisation
    def lr_at(self, step: int) -> float:
        cfg = self.cfg
        if step < cfg.warmup_steps:
            return cfg.lr * (step + 1) / cfg.warmup_steps
        per_step = cfg.batch_states * cfg.samples_per_state
        p = min(1.0, step * per_step / max(1, cfg.schedule_samples))
        return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * p)))

    def loss_on(self, samples: list[Sample]) -> tuple[torch.Tensor, dict]:
        batch = collate(samples, self.prompt)
        return batch_loss(self.model, self.head, batch, self.cfg.aux_weight, self.device, self.cfg.bin_sigma,
                          self.cfg.attn_weight, self.cfg.read_weight)

    def train_step(self) -> dict:
        t0, c0 = time.perf_counter(), time.process_time()
        samples = self.next_batch()
        t_data = time.perf_counter() - t0
        for g in self.opt.param_groups:
            g["lr"] = self.lr_at(self.step_n)
        loss, info = self.loss_on(samples)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(self.model.parameters()) + list(self.head.parameters()), 1.0)
        self.opt.step()
        self.step_n += 1
        self.seen += len(samples)
        self.wall_s += time.perf_counter() - t0
        self.cpu_s += time.process_time() - c0
        return {"loss": float(loss.detach()), **info, "data_s": t_data, "batch": len(samples)}

    # ------------------------------------------------------------------ DAgger
    def dagger_round(self) -> dict:
        """Run the student in closed loop on training worlds; keep every visited state for relabelling."""
        cfg = self.cfg
        rng = random.Random(f"edge-vla-train:{cfg.seed}:dagger-round:{self.dagger_rounds}")
        rt = TorchRuntime(self.model, roi=True, device=str(self.device))
        new, successes = 0, 0
        for _ in range(cfg.dagger_tasks):
            spec = world_spec(rng, "train", 0.0)
            world = replay(spec, [])
            hist: list = []
            rt.roi.box = None
            for _step in range(cfg.dagger_max_steps):
                if world.success:
                    break
                self.dagger.append({"spec": spec, "history": [list(h) for h in hist]})
                new += 1
                frame = np.ascontiguousarray(world.render())
                if rng.random() < cfg.dagger_beta:
                    action, _ = self.stream.label(world, frame)
                    action = action or Action(type="wait")
                else:
                    action, _ = rt.infer(frame, world.instruction)
                if action.type == "done":
                    break
                if action.type != "wait":
                    world.execute(action)
                world.advance(0.3)
                hist.append([0.3, action.fields() if action.type != "wait" else None])
            successes += int(world.success)
        if len(self.dagger) > cfg.dagger_buffer:
            self.dagger = self.dagger[-cfg.dagger_buffer:]
        self.dagger_rounds += 1
        return {"dagger_round": self.dagger_rounds, "dagger_states": new, "dagger_buffer": len(self.dagger),
                "dagger_rollout_success": successes / max(1, cfg.dagger_tasks)}

    # ------------------------------------------------------------------ evaluation, checkpoints
    def evaluate(self) -> dict:
        cfg = self.cfg
        rt = TorchRuntime(self.model, roi=True, device=str(self.device))
        t0 = time.perf_counter()
        res: dict = {}
        if cfg.eval_cases:
            cases = grounding_cases(cfg.eval_cases, seed=1000)
            cg = crop_grounding(rt, cases)
            res["crop_hit"], res["crop_chance"] = cg["rate"], cg["chance_rate"]
        if cfg.eval_full_cases:
            g = grounding(rt, grounding_cases(cfg.eval_full_cases, seed=2000))
            res["full_hit"] = g["rate"]
            res["full_hit_per_resolution"] = {k: v["rate"] for k, v in g["per_resolution"].items()}
        res["eval_s"] = time.perf_counter() - t0
        return res

    def log_curve(self, row: dict) -> None:
        row = {"samples": self.seen, "steps": self.step_n, "train_wall_s": round(self.wall_s, 2),
               "train_cpu_s": round(self.cpu_s, 2), "device": self.cfg.device, "threads": self.cfg.threads,
               "samples_per_s": round(self.seen / max(1e-9, self.wall_s), 2), **row}
        with open(self.out / CURVE, "a") as fh:
            fh.write(json.dumps(row) + "\n")
        self.log(json.dumps(row))

    def save(self) -> Path:
        tmp = self.out / (CKPT + ".tmp")
        if tmp.exists():
            shutil.rmtree(tmp)
        self.model.save_pretrained(str(tmp))
        torch.save({"head": self.head.state_dict(), "optimizer": self.opt.state_dict(), "step_n": self.step_n,
                    "seen": self.seen, "state_index": self.state_index, "wall_s": self.wall_s,
                    "cpu_s": self.cpu_s, "dagger": self.dagger, "dagger_rounds": self.dagger_rounds,
                    "next_eval": self.next_eval, "next_dagger": self.next_dagger}, tmp / STATE)
        final = self.out / CKPT
        old = self.out / (CKPT + ".old")
        if final.exists():
            os.replace(final, old)
        os.replace(tmp, final)
        if old.exists():
            shutil.rmtree(old)
        return final

    def run(self, minutes: float | None = None, max_samples: int | None = None, save_every_s: float = 600.0,
            final_eval: bool = True) -> dict:
        deadline = time.monotonic() + minutes * 60 if minutes else None
        last_save = time.monotonic()
        info: dict = {}
        losses: list[float] = []
        try:
            while True:
                if deadline is not None and time.monotonic() >= deadline:
                    break
                if max_samples is not None and self.seen >= max_samples:
                    break
                if self.cfg.dagger_every > 0 and self.seen >= self.next_dagger:
                    self.log(json.dumps(self.dagger_round()))
                    self.next_dagger = self.seen + self.cfg.dagger_every
                info = self.train_step()
                losses.append(info["loss"])
                if self.seen >= self.next_eval:
                    self.log_curve({"loss": float(np.mean(losses[-50:])), "ce": info["ce"],
                                    "pointer": info["pointer"], "attn": info.get("attn"), "read": info.get("read"),
                                    **self.evaluate()})
                    self.next_eval = self.seen + self.cfg.eval_every
                if time.monotonic() - last_save > save_every_s:
                    self.save()
                    last_save = time.monotonic()
            if final_eval:
                self.log_curve({"loss": float(np.mean(losses[-50:])) if losses else None, "final": True,
                                **self.evaluate()})
        finally:
            self.save()
            if self._workers is not None:
                self._workers.terminate()
                self._workers = None
                self._prefetch = None
        return {"samples": self.seen, "steps": self.step_n, "wall_s": self.wall_s, "last": info}
