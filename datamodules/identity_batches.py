"""FaceNet's training batches (§3.2): "around 40 faces are selected per identity per mini-batch. Additionally,
randomly sampled negative faces are added to each mini-batch."

Real LFW has 1,680 people with two or more photos and few with 40, so a person gives the photos they have and
random negatives fill the batch. The stream is the episode sampler's (datamodules/episodes.py): batch `i` is
a pure function of (seed, rank, i), so a training resumes at the batch it stopped at.
"""

from __future__ import annotations

import torch
from torch import Tensor

from datamodules.episodes import EpisodeSampler
from datamodules.files import DataError


class IdentityBatches(EpisodeSampler):
    """`size` faces: up to `faces` photos of each of up to `identities` people with two or more, then photos
    of other people at random. `people` is a list of (n_i, C, H, W) image tensors, one per person. A batch is
    (images, labels): labels number the people, so two random negatives of one person are a positive pair,
    as they should be."""

    def __init__(
        self, people: list[Tensor], *, identities: int, faces: int, size: int, seed: int, start: int = 0
    ):
        several = [i for i, photos in enumerate(people) if len(photos) >= 2]
        if not several:
            raise DataError(
                "FaceNet's batches need people with two or more photos (an anchor and a positive); "
                f"this split's {len(people)} people have one each"
            )
        counts = [len(photos) for photos in people]
        self.photos = torch.cat(people)  # one tensor; each person's photos a view of it
        self.owner = torch.arange(len(people)).repeat_interleave(torch.tensor(counts))  # each photo's person
        self.several, self.faces, self.size = torch.tensor(several), faces, size
        # The stream of episodes whose classes are the people with several photos, `identities` at a time.
        super().__init__(
            list(self.photos.split(counts)),
            way=min(identities, len(several)),
            shot=1,
            query=0,
            seed=seed,
            start=start,
        )

    def episode(self, index: int, stream: int) -> tuple[Tensor, Tensor]:
        g = torch.Generator().manual_seed(
            hash((self.seed, stream, index)) & 0x7FFF_FFFF_FFFF_FFFF
        )  # as episodes
        chosen = self.several[torch.randperm(len(self.several), generator=g)[: self.way]].tolist()
        images, labels, room = [], [], self.size
        for person in chosen:
            if room < 2:  # a person alone in the batch has no positive: the rest are negatives
                break
            pick = torch.randperm(len(self.classes[person]), generator=g)[: min(self.faces, room)]
            images.append(self.classes[person][pick])
            labels.append(torch.full((len(pick),), person))
            room -= len(pick)
        others = (~torch.isin(self.owner, torch.tensor([int(t[0]) for t in labels]))).nonzero().squeeze(1)
        negatives = others[torch.randperm(len(others), generator=g)[:room]]
        return torch.cat([*images, self.photos[negatives]]), torch.cat([*labels, self.owner[negatives]])
