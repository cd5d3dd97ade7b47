"""Chat models built offline the way real ones are laid out, for ``scripts/gpu_worker.py`` and the tests.

* :func:`chat_tokenizer`: a byte-level BPE tokenizer with Qwen2.5's or Llama-3's special tokens and their
  original chat templates (as TRL ships them, ``trl/chat_templates``), its EOS the end-of-text token the
  base checkpoints declare (``<|endoftext|>``, ``<|end_of_text|>``), while the template ends each turn
  with ``<|im_end|>`` / ``<|eot_id|>``: the layout of a base model fine-tuned on its chat template.
* :func:`scripted_chat_model`: a one-layer Llama whose next token is a function of the current one (its
  layer adds nothing to the residual stream; the LM head maps each embedding to its successor's row), so
  it answers every prompt with ``answer``, the end-of-turn token, then ``answer`` again, on any device.
  Its generation config lists the end-of-text token only.
"""

from __future__ import annotations

from pathlib import Path

import torch
import trl
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

#: Per style: the chat template file TRL ships, the special tokens (EOS first), BOS, the end-of-turn token.
STYLES = {
    "qwen2.5": {"template": "qwen2_5.jinja", "special": ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                "bos": None, "end_of_turn": "<|im_end|>"},
    "llama3": {"template": "llama3.jinja",
               "special": ["<|end_of_text|>", "<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
                           "<|eot_id|>"],
               "bos": "<|begin_of_text|>", "end_of_turn": "<|eot_id|>"},
}
ANSWER = "Hello world"
CORPUS = ["Hello world", "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.", "system user",
          "assistant", "What is the capital of France?", "Hi there", "Tell me a joke"] * 20


def chat_tokenizer(style: str) -> PreTrainedTokenizerFast:
    """A small tokenizer laid out as ``style``'s (see the module docstring), with no pad token of its own
    (as the real ones: the project picks one)."""
    spec = STYLES[style]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(CORPUS, trainer=trainers.BpeTrainer(
        vocab_size=400, special_tokens=spec["special"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=spec["special"][0], bos_token=spec["bos"],
                                   additional_special_tokens=spec["special"][1:])
    fast.chat_template = (Path(trl.__file__).parent / "chat_templates" / spec["template"]).read_text()
    return fast


def scripted_chat_model(tokenizer: PreTrainedTokenizerFast, style: str, hidden: int = 64) -> LlamaForCausalLM:
    """A real ``LlamaForCausalLM`` that, after any prompt ending with the assistant's generation prompt,
    writes :data:`ANSWER`, ``style``'s end-of-turn token, and :data:`ANSWER` again, round and round."""
    prompt_end = tokenizer.apply_chat_template([{"role": "user", "content": "Hi"}], add_generation_prompt=True,
                                               tokenize=True, return_dict=False)[-1]
    answer = tokenizer(ANSWER, add_special_tokens=False)["input_ids"]
    end_of_turn = tokenizer.convert_tokens_to_ids(STYLES[style]["end_of_turn"])
    chain = [prompt_end, *answer, end_of_turn, *answer]
    successor = dict(zip(chain[:-1], chain[1:]))
    successor[chain[-1]] = end_of_turn
    assert len(set(chain[:-len(answer)])) == len(chain) - len(answer), "the script's tokens must be distinct"
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden,
                         num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2,
                         max_position_embeddings=256, tie_word_embeddings=False,
                         eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.bos_token_id, pad_token_id=None)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    with torch.no_grad():
        layer = model.model.layers[0]
        layer.self_attn.o_proj.weight.zero_()  # the layer adds nothing: the last hidden state is the embedding
        layer.mlp.down_proj.weight.zero_()
        embeddings = model.model.embed_tokens.weight
        normalised = embeddings / embeddings.norm(dim=-1, keepdim=True) * hidden ** 0.5  # what the final norm gives
        model.lm_head.weight.zero_()
        for token, following in successor.items():
            model.lm_head.weight[following] += normalised[token]  # logit `hidden` for the successor, ~sqrt(hidden) for others
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = None
    return model.eval()
