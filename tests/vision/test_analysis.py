from dllab.vision.analysis import (
    homework_models,
    layer_table,
    model_input_shape,
    pooling_cost_rows,
    stacked_kernel_rows,
)


def test_layer_table_sums_to_the_model_and_counts_conv_macs():
    models = homework_models()
    for label, model in models.items():
        rows = layer_table(model, model_input_shape(label))
        assert sum(r.parameters for r in rows) == sum(p.numel() for p in model.parameters())
    first = layer_table(models["2023-24 max-pool"], (1, 28, 28))[0]
    assert first.output_shape == (8, 28, 28) and first.macs == 8 * 28 * 28 * 9


def test_stacked_kernels_and_pooling_costs():
    rows = stacked_kernel_rows(64)
    assert rows[1]["receptive field"] == 5 and rows[1]["stacked params"] == 2 * 9 * 64 * 64
    assert rows[1]["one 5x5 params"] == 25 * 64 * 64
    pooled, unpooled = pooling_cost_rows()
    assert pooled["parameters"] == 5_340_742
    assert unpooled["conv MACs"] > 5 * pooled["conv MACs"]
