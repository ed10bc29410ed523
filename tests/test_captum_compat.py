"""Code written for captum 0.8's captum.insights runs after changing only its imports."""

from __future__ import annotations

import json
import urllib.request

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision.transforms as transforms

# The only lines that differ from a captum.insights script:
from insights_app import AttributionVisualizer, Batch
from insights_app.features import ImageFeature


class Net(nn.Module):
    """The CIFAR network of the captum.insights tutorial, shrunk."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 5)
        self.pool1 = nn.MaxPool2d(2, 2)
        self.pool2 = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 32)
        self.fc2 = nn.Linear(32, 10)
        self.relu1 = nn.ReLU()
        self.relu2 = nn.ReLU()
        self.relu3 = nn.ReLU()

    def forward(self, x):
        x = self.pool1(self.relu1(self.conv1(x)))
        x = self.pool2(self.relu2(self.conv2(x)))
        x = x.view(-1, 16 * 5 * 5)
        x = self.relu3(self.fc1(x))
        return self.fc2(x)


def get_classes():
    return ["Plane", "Car", "Bird", "Cat", "Deer", "Dog", "Frog", "Horse", "Ship", "Truck"]


def baseline_func(input):
    return input * 0


def formatted_data_iter():
    g = torch.Generator().manual_seed(0)
    dataset = [(torch.rand(3, 32, 32, generator=g), int(torch.randint(0, 10, (1,), generator=g))) for _ in range(12)]
    dataloader = iter(torch.utils.data.DataLoader(dataset, batch_size=4, shuffle=False, num_workers=0))
    while True:
        images, labels = next(dataloader)
        yield Batch(inputs=images, labels=labels)


def _post(port, path, body):
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=60) as resp:
        return json.loads(resp.read())


def test_captum_insights_tutorial_script_runs_with_new_imports():
    torch.manual_seed(0)
    model = Net()
    model.eval()
    normalize = transforms.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    visualizer = AttributionVisualizer(
        models=[model],
        score_func=lambda o: F.softmax(o, 1),
        classes=get_classes(),
        features=[
            ImageFeature(
                "Photo",
                baseline_transforms=[baseline_func],
                input_transforms=[normalize],
            )
        ],
        dataset=formatted_data_iter(),
    )
    port = visualizer.serve(debug=True)
    try:
        assert isinstance(port, int) and port > 0
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/config", timeout=30) as resp:
            config = json.loads(resp.read())
        assert config["classes"] == get_classes()
        assert config["features"] == [{"name": "Photo", "type": "image"}]
        page = _post(
            port,
            "/api/v1/examples",
            {"method": "IntegratedGradients", "arguments": {"n_steps": 25, "baseline": "feature"}},
        )
        examples = page["examples"]
        assert [e["id"] for e in examples] == [0, 1, 2, 3]
        for e in examples:
            model_out = e["models"][0]
            probs = [p["score"] for p in model_out["predictions"]]
            assert len(probs) == 4 and probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1.0 + 1e-6
            assert model_out["predictions"][0]["label"] in get_classes()
            assert model_out["attributions"][0]["image"].startswith("data:image/png;base64,")
            assert e["label"]["name"] in get_classes()
    finally:
        visualizer.stop()
