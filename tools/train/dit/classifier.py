"""fmnist-classifier: a small convolutional Fashion-MNIST classifier used to score tern-demo-dit's
samples (class accuracy, Frechet distance on its penultimate features).

Input [N, 1, 32, 32] in [-1, 1] (the DiT's image space: 28x28 padded by 2 black pixels).
  conv1 3x3 1->32, BN, ReLU; conv2 3x3 32->32, BN, ReLU; max-pool 2     -> 16x16
  conv3 3x3 32->64, BN, ReLU; conv4 3x3 64->64, BN, ReLU; max-pool 2    -> 8x8
  conv5 3x3 64->128, BN, ReLU; global average pool                      -> 128
  fc1 128->128, ReLU  (the penultimate features)                       -> 128
  fc2 128->10 logits
All convolutions have padding 1 and bias False (BatchNorm follows)."""
import torch
import torch.nn as nn
import torch.nn.functional as F


class FmnistClassifier(nn.Module):
    def __init__(self):
        super().__init__()
        chans = [(1, 32), (32, 32), (32, 64), (64, 64), (64, 128)]
        self.convs = nn.ModuleList([nn.Conv2d(a, b, 3, padding=1, bias=False) for a, b in chans])
        self.bns = nn.ModuleList([nn.BatchNorm2d(b) for _, b in chans])
        self.fc1 = nn.Linear(128, 128)
        self.fc2 = nn.Linear(128, 10)

    def features(self, x):
        for i, (conv, bn) in enumerate(zip(self.convs, self.bns)):
            x = F.relu(bn(conv(x)))
            if i in (1, 3):
                x = F.max_pool2d(x, 2)
        return F.relu(self.fc1(x.mean(dim=(2, 3))))

    def forward(self, x):
        return self.fc2(self.features(x))
