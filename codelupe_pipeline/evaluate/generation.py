"""Batched generation and token log-likelihoods for a base model with its LoRA adapters.

Two backends behind one interface:
- vLLM (when it is installed and a GPU is present): continuous batching, paged attention, LoRA adapters
  served side by side (`LoRARequest`), prompt log-probabilities for perplexity.
- transformers (otherwise): the base model loaded once, every adapter attached by name (PEFT), the base
  model itself reached with the adapters disabled; prompts batched across tasks, longest first, with each
  group of prompts that share stop sequences stopping as soon as every member hit one.

Generation only: model-generated code never runs in this process (see sandbox.py).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from codelupe_pipeline.train.samples import file_separator

log = logging.getLogger(__name__)
BACKENDS = ("auto", "vllm", "transformers")
VLLM_LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)  # the ranks vLLM's LoRA kernels are built for


@dataclass(frozen=True)
class GenerationParams:
    max_new_tokens: int = 512
    batch_size: int = 32  # prompts per forward pass (transformers; vLLM schedules its own batches)
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 0.95
    samples_per_task: int = 1  # n
    seed: int = 0

    def __post_init__(self) -> None:
        if self.samples_per_task < 1 or self.max_new_tokens < 1 or self.batch_size < 1:
            raise ValueError("samples_per_task, max_new_tokens and batch_size must be at least 1")
        if self.temperature < 0 or not 0 < self.top_p <= 1:
            raise ValueError("temperature must be >= 0 and top_p in (0, 1]")
        if self.temperature == 0 and self.samples_per_task > 1:
            raise ValueError("greedy decoding (temperature 0) gives one completion per task: set a temperature")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def identity(self) -> dict[str, object]:
        """What changes the completions (batch size does not): part of every cache key."""
        return {
            "max_new_tokens": self.max_new_tokens,
            "temperature": self.temperature,
            "top_p": None if self.greedy else self.top_p,
            "n": self.samples_per_task,
            "seed": None if self.greedy else self.seed,
        }


@dataclass(frozen=True)
class Request:
    prompt: str
    stops: tuple[str, ...]


def truncate_at_stop(text: str, stops: Sequence[str]) -> str:
    cut = min((i for i in (text.find(s) for s in stops if s) if i >= 0), default=len(text))
    return text[:cut]


class Backend(Protocol):
    name: str
    file_separator: str
    failed_adapters: dict[str, str]  # adapter name -> why it could not be loaded

    def generate(
        self, requests: Sequence[Request], params: GenerationParams, adapter: str | None
    ) -> Iterator[tuple[int, str]]:
        """(request index, completion) pairs, `samples_per_task` per request, as soon as each is ready."""
        ...

    def token_nll(self, texts: Sequence[str], window: int, adapter: str | None) -> tuple[float, int]:
        """(summed negative log-likelihood in nats, tokens scored) over every text, in windows of `window`."""
        ...

    def close(self) -> None: ...


def vllm_available() -> bool:
    if importlib.util.find_spec("vllm") is None:
        return False
    import torch

    return torch.cuda.is_available()


def choose_backend(kind: str, device: str) -> str:
    if kind not in BACKENDS:
        raise ValueError(f"generation backend {kind!r} is not one of {', '.join(BACKENDS)}")
    if kind == "vllm" and not vllm_available():
        raise RuntimeError("the vLLM backend was requested, but vLLM is not installed or no CUDA GPU is visible")
    if kind == "auto":
        return "vllm" if device.startswith("cuda") and vllm_available() else "transformers"
    return kind


def open_backend(
    kind: str,
    base_location: str,
    adapters: Mapping[str, str],
    device: str,
    quantization: str = "auto",
    on_batch: Callable[[int, int], None] | None = None,
) -> Backend:
    """The base model with every named adapter, on the chosen backend."""
    chosen = choose_backend(kind, device)
    if chosen == "vllm":
        return VllmBackend(base_location, adapters, quantization)
    return TransformersBackend(base_location, adapters, device, quantization, on_batch)


def lora_rank(adapter_dir: str) -> int:
    config = json.loads((Path(adapter_dir) / "adapter_config.json").read_text())
    return int(config.get("r", 16))


class TransformersBackend:
    name = "transformers"

    def __init__(
        self,
        base_location: str,
        adapters: Mapping[str, str],
        device: str,
        quantization: str = "auto",
        on_batch: Callable[[int, int], None] | None = None,
    ) -> None:
        from codelupe_pipeline.train.base_model import load_model, load_tokenizer

        if quantization == "auto":
            quantization = "nf4" if device.startswith("cuda") else "none"  # as training loaded it
        self.device = device
        self.on_batch = on_batch
        model = load_model(base_location, device, quantization)
        self.failed_adapters: dict[str, str] = {}
        if adapters:
            from peft import PeftModel

            for name, directory in adapters.items():
                try:
                    if isinstance(model, PeftModel):
                        model.load_adapter(directory, adapter_name=name)
                    else:
                        model = PeftModel.from_pretrained(model, directory, adapter_name=name)
                except Exception as exc:  # one unloadable adapter does not stop the others
                    self.failed_adapters[name] = f"{type(exc).__name__}: {exc}"
        model.eval()
        self.model = model
        self.adapters = {name: d for name, d in adapters.items() if name not in self.failed_adapters}
        self.tokenizer = load_tokenizer(base_location)
        self.tokenizer.padding_side = "left"  # generation continues each prompt's end
        self.file_separator = file_separator(self.tokenizer.get_vocab())
        self.max_positions = int(getattr(model.config, "max_position_embeddings", 0) or 1 << 30)

    def _using(self, adapter: str | None) -> AbstractContextManager[Any]:
        if not self.adapters:
            if adapter is not None:
                raise KeyError(f"adapter {adapter!r} was not loaded")
            return nullcontext()
        if adapter is None:
            return self.model.disable_adapter()
        self.model.set_adapter(adapter)
        return nullcontext()

    def generate(
        self, requests: Sequence[Request], params: GenerationParams, adapter: str | None
    ) -> Iterator[tuple[int, str]]:
        import torch

        encoded = self.tokenizer([r.prompt for r in requests], add_special_tokens=False)["input_ids"]
        room = max(1, self.max_positions - params.max_new_tokens)
        prompts = [ids[-room:] for ids in encoded]  # keep the end of an over-long prompt
        # Sample-major, longest first within each group of shared stops: a batch holds many tasks of
        # similar length rather than copies of one prompt, and pads little.
        jobs = sorted(
            ((sample, i) for i in range(len(requests)) for sample in range(params.samples_per_task)),
            key=lambda job: (requests[job[1]].stops, job[0], -len(prompts[job[1]])),
        )
        torch.manual_seed(params.seed)
        batch_size = params.batch_size
        done = 0
        start = 0
        with self._using(adapter), torch.no_grad():
            while start < len(jobs):
                stops = requests[jobs[start][1]].stops
                chunk = [j for j in jobs[start : start + batch_size] if requests[j[1]].stops == stops]
                try:
                    texts = self._generate_batch([prompts[i] for _, i in chunk], params, stops)
                except torch.cuda.OutOfMemoryError:
                    if batch_size == 1:
                        raise
                    batch_size = max(1, batch_size // 2)
                    torch.cuda.empty_cache()
                    log.warning(f"out of GPU memory while generating: batch size lowered to {batch_size}")
                    continue
                for (_, index), text in zip(chunk, texts, strict=True):
                    yield index, truncate_at_stop(text, stops)
                start += len(chunk)
                done += len(chunk)
                if self.on_batch:
                    self.on_batch(done, len(jobs))

    def _generate_batch(self, prompts: list[list[int]], params: GenerationParams, stops: tuple[str, ...]) -> list[str]:
        import torch

        pad = self.tokenizer.pad_token_id
        width = max(len(p) for p in prompts)
        input_ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts], device=self.device)
        attention = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=self.device)
        generated = self.model.generate(
            input_ids=input_ids,
            attention_mask=attention,
            max_new_tokens=params.max_new_tokens,
            do_sample=not params.greedy,
            temperature=None if params.greedy else params.temperature,
            top_p=None if params.greedy else params.top_p,
            top_k=None if params.greedy else 0,  # nucleus sampling alone, as HumanEval's conventions
            pad_token_id=pad,
            eos_token_id=self.tokenizer.eos_token_id,
            stop_strings=list(stops) or None,
            tokenizer=self.tokenizer,
        )
        return list(self.tokenizer.batch_decode(generated[:, width:], skip_special_tokens=True))

    def token_nll(self, texts: Sequence[str], window: int, adapter: str | None) -> tuple[float, int]:
        import torch

        ids = self.tokenizer(list(texts), add_special_tokens=False)["input_ids"]
        eos = self.tokenizer.eos_token_id
        windows = [
            chunk
            for seq in ids
            for chunk in (([*seq, eos])[s : s + window] for s in range(0, len(seq) + 1, window))
            if len(chunk) > 1
        ]
        total, count = 0.0, 0
        batch = 8
        with self._using(adapter), torch.no_grad():
            for start in range(0, len(windows), batch):
                chunk = windows[start : start + batch]
                width = max(len(w) for w in chunk)
                input_ids = torch.tensor([w + [eos] * (width - len(w)) for w in chunk], device=self.device)
                mask = torch.tensor([[1] * len(w) + [0] * (width - len(w)) for w in chunk], device=self.device)
                logits = self.model(input_ids=input_ids, attention_mask=mask).logits[:, :-1].float()
                targets = input_ids[:, 1:]
                nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), targets, reduction="none")
                keep = mask[:, 1:].bool()
                total += float(nll[keep].sum())
                count += int(keep.sum())
        return total, count

    def close(self) -> None:
        import gc

        import torch

        del self.model
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


class VllmBackend:
    """vLLM's offline engine with the adapters as LoRA requests. Used when vLLM is importable on a GPU box."""

    name = "vllm"

    def __init__(self, base_location: str, adapters: Mapping[str, str], quantization: str = "auto") -> None:
        from vllm import LLM
        from vllm.lora.request import LoRARequest

        kwargs: dict[str, Any] = {"model": base_location, "dtype": "bfloat16", "enable_prefix_caching": True}
        if quantization == "nf4":
            kwargs["quantization"] = "bitsandbytes"
        if adapters:
            rank = max(lora_rank(d) for d in adapters.values())
            kwargs.update(
                enable_lora=True,
                max_loras=len(adapters),
                max_lora_rank=next((r for r in VLLM_LORA_RANKS if r >= rank), rank),
            )
        self.llm = LLM(**kwargs)
        self.failed_adapters: dict[str, str] = {}  # vLLM loads adapters with their first request
        self.file_separator = file_separator(self.llm.get_tokenizer().get_vocab())
        self.loras = {name: LoRARequest(name, i + 1, d) for i, (name, d) in enumerate(adapters.items())}

    def _lora(self, adapter: str | None) -> Any:
        if adapter is None:
            return None
        return self.loras[adapter]

    def generate(
        self, requests: Sequence[Request], params: GenerationParams, adapter: str | None
    ) -> Iterator[tuple[int, str]]:
        from vllm import SamplingParams

        groups: dict[tuple[str, ...], list[int]] = {}
        for i, request in enumerate(requests):
            groups.setdefault(request.stops, []).append(i)
        for stops, indices in groups.items():
            sampling = SamplingParams(
                n=params.samples_per_task,
                temperature=params.temperature,
                top_p=1.0 if params.greedy else params.top_p,
                max_tokens=params.max_new_tokens,
                stop=list(stops) or None,
                seed=None if params.greedy else params.seed,
            )
            outputs = self.llm.generate(
                [requests[i].prompt for i in indices], sampling, lora_request=self._lora(adapter), use_tqdm=False
            )
            for index, output in zip(indices, outputs, strict=True):
                for completion in output.outputs:
                    yield index, truncate_at_stop(completion.text, stops)

    def token_nll(self, texts: Sequence[str], window: int, adapter: str | None) -> tuple[float, int]:
        from vllm import SamplingParams

        tokenizer = self.llm.get_tokenizer()
        eos = tokenizer.eos_token_id
        windows = [
            chunk
            for text in texts
            for seq in [[*tokenizer(text, add_special_tokens=False)["input_ids"], eos]]
            for chunk in (seq[s : s + window] for s in range(0, len(seq), window))
            if len(chunk) > 1
        ]
        outputs = self.llm.generate(
            [{"prompt_token_ids": w} for w in windows],
            SamplingParams(max_tokens=1, prompt_logprobs=0),
            lora_request=self._lora(adapter),
            use_tqdm=False,
        )
        total, count = 0.0, 0
        for tokens, output in zip(windows, outputs, strict=True):
            for token, logprobs in zip(tokens[1:], (output.prompt_logprobs or [])[1:], strict=False):
                if logprobs and token in logprobs:
                    total -= float(logprobs[token].logprob)
                    count += 1
        return total, count

    def close(self) -> None:
        del self.llm


def perplexity(nll: float, tokens: int) -> float | None:
    return math.exp(nll / tokens) if tokens else None
