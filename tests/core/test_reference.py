"""The reference pass is the base model (adapters disabled, or a frozen copy) and gets no gradient."""

import pytest
import torch
from diffusers import DDPMScheduler, UNet2DConditionModel

from prefopt.core import NoiseProcess, Reference, preference_errors
from prefopt.models import add_lora
from prefopt.objectives import DPO


def _inputs(batch=2):
    g = torch.Generator().manual_seed(0)
    return torch.randn(2 * batch, 4, 8, 8, generator=g), {"encoder_hidden_states": torch.randn(batch, 3, 16, generator=g)}


def _trained_lora(path):
    model = UNet2DConditionModel.from_pretrained(path)
    add_lora(model, rank=4, alpha=4, target_modules=["to_k", "to_q", "to_v", "to_out.0"])
    with torch.no_grad():  # move the adapter away from its zero init so policy != base
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    return model


def test_lora_reference_equals_base_model_and_gets_no_gradient(tiny_unet_dir):
    base = UNet2DConditionModel.from_pretrained(tiny_unet_dir).eval()
    policy = _trained_lora(tiny_unet_dir).eval()
    x0, cond = _inputs()
    process = NoiseProcess(DDPMScheduler())
    errors = preference_errors(policy, Reference(policy, lora=True), process, x0, groups=2, cond=cond,
                               generator=torch.Generator().manual_seed(3))
    noised = errors.noised
    with torch.no_grad():
        base_pred = base(noised.x_t, noised.timesteps, encoder_hidden_states=cond["encoder_hidden_states"].repeat(2, 1, 1)).sample
    base_err = ((base_pred - noised.target) ** 2).mean(dim=(1, 2, 3)).view(2, -1)
    torch.testing.assert_close(errors.ref_err, base_err)
    assert not torch.allclose(errors.policy_err, errors.ref_err)  # adapters are back on for the policy
    assert not errors.ref_err.requires_grad
    loss, _ = DPO(beta=5000)(policy_err=errors.policy_err, ref_err=errors.ref_err)
    loss.backward()
    lora = [p for n, p in policy.named_parameters() if "lora_" in n]
    frozen = [p for n, p in policy.named_parameters() if "lora_" not in n]
    assert all(p.grad is not None for p in lora) and any(p.grad.abs().sum() > 0 for p in lora)
    assert all(p.grad is None for p in frozen)


def test_adapters_come_back_after_an_error(tiny_unet_dir):
    policy = _trained_lora(tiny_unet_dir)
    reference = Reference(policy, lora=True)
    with pytest.raises(RuntimeError), reference():
        raise RuntimeError("boom")
    x0, cond = _inputs()
    with torch.no_grad():
        on = policy(x0[:2], 10, encoder_hidden_states=cond["encoder_hidden_states"]).sample
        with reference() as network:
            off = network(x0[:2], 10, encoder_hidden_states=cond["encoder_hidden_states"]).sample
        again = policy(x0[:2], 10, encoder_hidden_states=cond["encoder_hidden_states"]).sample
    assert not torch.allclose(on, off)
    torch.testing.assert_close(on, again)


def test_full_finetune_reference_is_a_frozen_copy(tiny_unet_dir):
    policy = UNet2DConditionModel.from_pretrained(tiny_unet_dir)
    reference = Reference(policy, lora=False)
    x0, cond = _inputs()
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(0.01)
    with reference() as network:
        assert network is not policy
        assert not any(p.requires_grad for p in network.parameters())
        with torch.no_grad():
            ref = network(x0[:2], 10, encoder_hidden_states=cond["encoder_hidden_states"]).sample
    base = UNet2DConditionModel.from_pretrained(tiny_unet_dir)
    with torch.no_grad():
        expected = base(x0[:2], 10, encoder_hidden_states=cond["encoder_hidden_states"]).sample
    torch.testing.assert_close(ref, expected)


def test_previous_stage_reset_makes_the_current_policy_the_reference(tiny_unet_dir):
    policy = UNet2DConditionModel.from_pretrained(tiny_unet_dir)
    reference = Reference(policy, lora=False)
    x0, cond = _inputs()
    kwargs = {"encoder_hidden_states": cond["encoder_hidden_states"]}
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(0.01)
        moved = policy(x0[:2], 10, **kwargs).sample
        with reference() as network:
            assert not torch.allclose(network(x0[:2], 10, **kwargs).sample, moved)
        reference.reset_to_policy()
        with reference() as network:
            torch.testing.assert_close(network(x0[:2], 10, **kwargs).sample, moved)
            assert network is not policy and not any(p.requires_grad for p in network.parameters())


def test_previous_stage_reset_with_lora_is_refused(tiny_unet_dir):
    with pytest.raises(ValueError, match="lora.enabled=false"):
        Reference(_trained_lora(tiny_unet_dir), lora=True).reset_to_policy()
