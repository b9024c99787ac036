"""A byte-level BPE tokenizer trained offline on the manifest's own text, for the tiny random models
of tests and the demo. Byte-level BPE keeps case, digits, brackets and commas, so a box rendered as
``[0.34,0.51,0.20,0.18]`` decodes back to exactly the same characters (WordPiece tokenizers
lower-case and split it, which breaks box parsing). Real models bring their own tokenizer.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["IMAGE_TOKEN", "SPECIAL_TOKENS", "CHAT_TEMPLATE", "train_bpe"]

IMAGE_TOKEN = "<image>"
BOI_TOKEN = "<start_of_image>"
EOI_TOKEN = "<end_of_image>"
SPECIAL_TOKENS = ["<pad>", "<bos>", "<eos>", IMAGE_TOKEN, BOI_TOKEN, EOI_TOKEN]

#: A minimal chat template: the user turn (image placeholder + prompt), then the model's turn.
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}"
    "{% if m['role'] == 'user' %}<|user|>{{ m['content'] }}\n{% else %}"
    "<|model|>{{ m['content'] }}{{ eos_token }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|model|>{% endif %}"
)


def train_bpe(texts: Iterable[str], vocab_size: int = 1024) -> object:
    """A ``PreTrainedTokenizerFast`` (byte-level BPE) trained on ``texts``, with pad/bos/eos, the
    image placeholder tokens and :data:`CHAT_TEMPLATE`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS + ["<|user|>", "<|model|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(texts), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<pad>",
        bos_token="<bos>",
        eos_token="<eos>",
        additional_special_tokens=[IMAGE_TOKEN, BOI_TOKEN, EOI_TOKEN, "<|user|>", "<|model|>"],
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast
