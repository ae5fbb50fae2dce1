"""``model.tie_embeddings``: the decoder reads its input embedding from its output layer's weight (and, with
``data.joint_vocab``, so does the encoder): one parameter, saved and loaded as one, still learning the toy task."""

import pytest
import torch
from helpers.runs import SENTENCES, save_tiny_checkpoint
from helpers.toy import VOCAB, greedy_search, model_settings, reversal_batch, train_reversal

from seq2seq.checkpoint import load_checkpoint, read_checkpoint, write_export
from seq2seq.core.model import Seq2Seq
from seq2seq.core.translator import Translator
from seq2seq.settings import DecodeSettings

DIM = 12  # the embedding, the encoder and (bridge=project) the decoder: what the output layer reads


def parameters(model: torch.nn.Module) -> int:
    return sum(parameter.numel() for parameter in model.parameters())  # a shared parameter counts once


def model(tie: bool, joint_vocab: bool = False) -> Seq2Seq:
    torch.manual_seed(0)
    settings = model_settings(embedding_dim=DIM, hidden_size=DIM, bridge="project", tie_embeddings=tie)
    return Seq2Seq(settings, VOCAB, VOCAB, joint_vocab=joint_vocab)


def test_tied_the_decoders_embedding_is_its_output_layers_weight_and_the_model_has_vocab_x_dim_fewer_parameters():
    tied, untied = model(tie=True), model(tie=False)
    assert tied.decoder.embedding.weight is tied.decoder.output.weight
    assert tied.encoder.embedding.weight is not tied.decoder.embedding.weight  # two vocabularies
    assert parameters(untied) - parameters(tied) == VOCAB * DIM
    assert list(tied.state_dict()) == list(untied.state_dict())  # the same keys: a checkpoint reads the same way
    assert torch.all(tied.decoder.embedding.weight[0] == 0)  # the pad's embedding starts at zero, as untied


def test_with_a_joint_vocabulary_the_encoder_shares_the_same_matrix_and_without_tying_nothing_is_shared():
    tied = model(tie=True, joint_vocab=True)
    assert tied.encoder.embedding.weight is tied.decoder.embedding.weight is tied.decoder.output.weight
    assert parameters(model(tie=False, joint_vocab=True)) - parameters(tied) == 2 * VOCAB * DIM
    untied = model(tie=False, joint_vocab=True)
    weights = [untied.encoder.embedding.weight, untied.decoder.embedding.weight, untied.decoder.output.weight]
    assert len({id(weight) for weight in weights}) == 3


def translations(translator: Translator) -> list:
    return [(h.text, h.score) for hypotheses in translator.translate_n_best(SENTENCES[:4]) for h in hypotheses]


def test_a_tied_model_saved_loaded_and_exported_stays_tied_and_translates_identically(tmp_path):
    path = save_tiny_checkpoint(tmp_path / "tied.ckpt", "model.tie_embeddings=true", "data.joint_vocab=true")
    saved = read_checkpoint(path)["state_dict"]
    loaded = load_checkpoint(path)
    shared = loaded.model.encoder.embedding.weight
    assert shared is loaded.model.decoder.embedding.weight is loaded.model.decoder.output.weight
    assert torch.equal(shared, saved["model.decoder.output.weight"])
    write_export(loaded, tmp_path / "exported")
    exported = load_checkpoint(tmp_path / "exported")
    assert exported.model.encoder.embedding.weight is exported.model.decoder.output.weight
    beam = DecodeSettings(strategy="beam", beam_size=3, n_best=2)
    for decode in (DecodeSettings(), beam):
        assert translations(Translator(exported, decode)) == translations(Translator(loaded, decode))


def test_a_model_saved_before_tie_embeddings_existed_loads_untied_and_translates_as_before(tmp_path, checkpoint):
    raw = torch.load(checkpoint, weights_only=True)
    del raw["hyper_parameters"]["config"]["model"]["tie_embeddings"]
    torch.save(raw, tmp_path / "older.ckpt")
    older = load_checkpoint(tmp_path / "older.ckpt")
    assert older.model.decoder.embedding.weight is not older.model.decoder.output.weight
    assert translations(Translator(older, DecodeSettings())) == translations(
        Translator(load_checkpoint(checkpoint), DecodeSettings())
    )


@pytest.mark.slow
def test_a_tied_model_learns_the_toy_task():
    keys = dict(embedding_dim=64, hidden_size=32, bridge="concat", attention="luong_dot", feed_context=False)
    net, losses = train_reversal(steps=150, tie_embeddings=True, **keys)  # decoder 64 = embedding_dim
    assert net.decoder.embedding.weight is net.decoder.output.weight
    assert sum(losses[-10:]) < 0.1 * sum(losses[:10])
    source, lengths, _ = reversal_batch(30, torch.Generator().manual_seed(8))
    hypotheses = [h.tokens for h in greedy_search(net, source, lengths, max_length=12)]
    expected = [source[i, :n].flip(0).tolist() for i, n in enumerate(lengths.tolist())]
    assert sum(h == e for h, e in zip(hypotheses, expected)) >= 24
