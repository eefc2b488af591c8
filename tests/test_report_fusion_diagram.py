"""The report draws fusion specs: two streams, joint segments, cross arrows, search probabilities."""
from __future__ import annotations

from matplotlib.colors import to_hex

from mmsearch.nas import pattern_spec
from mmsearch.report import plots_arch
from mmsearch.report.build import arch_string
from mmsearch.report.plots_fusion import CROSS
from mmsearch.report.style import op_colour, op_label


def _boxes(ax):
    return [p for p in ax.patches if type(p).__name__ == "FancyBboxPatch"]


def _cross_arrows(ax):
    return [p for p in ax.patches if type(p).__name__ == "FancyArrowPatch" and to_hex(p.get_edgecolor()) == CROSS.lower()]


def test_pattern_diagram_has_both_streams_a_joint_segment_and_cross_arrows():
    spec = pattern_spec("co_attention_to_concat").to_dict()
    ax = plots_arch.arch_diagram(spec, title="t").axes[0]
    texts = [t.get_text() for t in ax.texts]
    # co_att is drawn on both rows, the per-stream FFNs on theirs, the joint blocks once (tall)
    assert [t for t in texts if t in {"CO", "FFN", "JRSA"}] == ["CO", "CO", "FFN", "FFN", "JRSA", "FFN"]
    assert "concat" in texts and "text tokens" in texts
    fills = [to_hex(p.get_facecolor()) for p in _boxes(ax)]
    assert fills[:2] == [op_colour("co_att").lower()] * 2
    joint = [p for p in _boxes(ax) if to_hex(p.get_facecolor()) == op_colour("joint_rel_self_att").lower()]
    assert len(joint) == 1 and joint[0].get_height() > 1.0  # spans both rows
    assert len(_cross_arrows(ax)) == 2  # co-attention: one arrow each way


def test_searched_fusion_spec_shows_probabilities_and_one_way_cross_attention():
    spec = {
        "blocks": [{"stream": "text", "op": "t2r_att"}, {"stream": "image", "op": "guided_att"}],
        "stages": {"enc": ["text:t2r_att"], "dec": ["image:guided_att"]},
        "op_pools": {"enc": ["text:t2r_att", "image:guided_att"], "dec": ["text:t2r_att", "image:guided_att"]},
        "probs": {"enc": [[0.7, 0.3]], "dec": [[0.4, 0.6]]},
        "pattern": "searched",
    }
    ax = plots_arch.arch_diagram(spec).axes[0]
    texts = [t.get_text() for t in ax.texts]
    assert "0.70" in texts and "0.60" in texts and "T2R" in texts and "GA" in texts
    assert len(_cross_arrows(ax)) == 2
    assert arch_string(spec) == "T:T2R I:GA"
    assert plots_arch.blocks(spec, "dec") == ["image:guided_att"] and op_label("joint:joint_rel_self_att") == "J:JRSA"
