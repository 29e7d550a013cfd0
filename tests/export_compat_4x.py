"""Run under transformers 4.x: the seed model card's own snippet must work on one of our exports.

    python tests/export_compat_4x.py EXPORT_DIR

(``Text2TextGenerationPipeline`` was removed in transformers 5; CI runs this in a 4.x venv.)
"""

import sys

import transformers
from transformers import BartForConditionalGeneration, BertTokenizer, Text2TextGenerationPipeline


def main(path: str) -> int:
    assert transformers.__version__.startswith("4."), (
        f"needs transformers 4.x, found {transformers.__version__}"
    )
    tokenizer = BertTokenizer.from_pretrained(path)
    model = BartForConditionalGeneration.from_pretrained(path)
    text2text_generator = Text2TextGenerationPipeline(model, tokenizer)
    out = text2text_generator("中国的首都是[MASK]京", max_length=50, do_sample=False)
    assert isinstance(out, list) and isinstance(out[0]["generated_text"], str), out
    assert (
        len(tokenizer) == model.config.vocab_size
        and tokenizer.convert_tokens_to_ids("[MASK]") != tokenizer.unk_token_id
    )
    print(f"transformers {transformers.__version__}: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
