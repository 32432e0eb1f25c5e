"""Fine-tuning in the app (issue 19): the hardware screen proposes it on a small machine,
and the wizard's "Start from" field (model.init_from) checks the source as it is typed.
Driven with Pilot and checked on what the terminal shows."""

from __future__ import annotations

import pytest
from pilot import make_app, quick_idle, run, screen_text, set_field, wait_for, wait_screen  # noqa: F401

from fakes import fake_hardware_cpu_only, fake_hardware_rtx4060, static_text

pytestmark = pytest.mark.tui


@pytest.mark.parametrize("machine,preset", [(fake_hardware_cpu_only, "finetune-cpu"),
                                            (fake_hardware_rtx4060, "finetune-gpt2")],
                         ids=["cpu", "8gb-gpu"])
def test_a_small_machine_is_offered_fine_tuning(machine, preset, tmp_path):
    """The proposal (recommend() on the detected machine) names the fine-tuning preset and
    why; the preset list holds it, so choosing it opens the wizard on it."""
    app = make_app(tmp_path, hardware=machine())

    async def drive():
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_screen(pilot, "HardwareScreen")
            await wait_for(pilot, lambda: app.recommendation is not None, what="the proposal")
            await pilot.pause()
            shown = " ".join(static_text(app.screen.query_one("#hw-recommendation")).split())
            assert f"Or fine-tune: {preset}" in shown
            assert "fine-tuned on your text beats anything trained from scratch" in shown
            assert "Or fine-tune:" in screen_text(app)
            app.screen.open_preset(preset)
            await wait_screen(pilot, "WizardScreen")
            assert app.screen.doc.get("model.init_from").startswith("hf:")

    run(drive())
