"""Run under transformers 4.x: the seed model card's own snippet must work on one of our exports.

    python tests/export_compat_4x.py EXPORT_DIR

(``Text2TextGenerationPipeline`` was removed in transformers 5; CI runs this in a 4.x venv.) When the
export holds ``reference_5x.json`` (written by tests/e2e/test_export_e2e.py under transformers 5), the logits
and the greedy generation under 4.x must equal those of 5.x, and the pipeline's text must be the
decoding of that generation: the export means the same model to both.
"""

import json
import sys
from pathlib import Path

import torch
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
    reference_file = Path(path) / "reference_5x.json"
    if reference_file.is_file():
        ref = json.loads(reference_file.read_text(encoding="utf-8"))
        enc = tokenizer(ref["prompt"], return_tensors="pt", return_token_type_ids=False)
        assert enc["input_ids"][0].tolist() == ref["input_ids"], "tokenization differs from 5.x"
        model.eval()
        with torch.no_grad():
            logits = model(**enc, decoder_input_ids=enc["input_ids"][:, :4]).logits[0, :, :8]
            for beams, ids in ref["generated_ids"].items():
                generated = model.generate(**enc, max_length=50, do_sample=False, num_beams=int(beams))
                assert generated[0].tolist() == ids, f"generation with {beams} beams differs from 5.x"
        assert torch.allclose(logits, torch.tensor(ref["logits"]), atol=1e-4), "logits differ from 5.x"
        beams = str(getattr(text2text_generator, "generation_config", model.generation_config).num_beams)
        expected = tokenizer.decode(ref["generated_ids"][beams], skip_special_tokens=True)
        assert out[0]["generated_text"] == expected, (out, expected)
        print("transformers 4.x: logits, generations and the pipeline's text equal transformers 5.x")
    print(f"transformers {transformers.__version__}: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
