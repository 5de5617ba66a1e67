"""TFDS builders for the real datasets; importing this package registers them with TFDS.

| TFDS name (configs)                               | label keys                     |
|---------------------------------------------------|--------------------------------|
| mtat (top50, all188)                              | tags                           |
| mtg_jamendo (top50, genre, moodtheme, instrument) | tags                           |
| gtzan_filtered                                    | genre                          |
| giantsteps_key                                    | key                            |
| nsynth_notes                                      | pitch, instrument_family       |
| vocalset (singer, technique)                      | singer, technique              |
| medleydb                                          | instrument                     |
| emomusic                                          | emotion, emotion_raw           |
| fma (small, medium, large, full)                  | (none)                         |
| audio_folder (unlabeled, labeled)                 | (none) / label                 |

See docs/datasets.md for layouts and split rules.
"""

from data_pipelines.builders.audio_folder import AudioFolder
from data_pipelines.builders.emomusic import Emomusic
from data_pipelines.builders.fma import Fma
from data_pipelines.builders.giantsteps import GiantstepsKey
from data_pipelines.builders.gtzan import GtzanFiltered
from data_pipelines.builders.medleydb import Medleydb
from data_pipelines.builders.mtat import Mtat
from data_pipelines.builders.mtg_jamendo import MtgJamendo
from data_pipelines.builders.nsynth import NsynthNotes
from data_pipelines.builders.vocalset import Vocalset

BUILDERS = {
    "audio_folder": AudioFolder,
    "emomusic": Emomusic,
    "fma": Fma,
    "giantsteps_key": GiantstepsKey,
    "gtzan_filtered": GtzanFiltered,
    "medleydb": Medleydb,
    "mtat": Mtat,
    "mtg_jamendo": MtgJamendo,
    "nsynth_notes": NsynthNotes,
    "vocalset": Vocalset,
}

__all__ = ["BUILDERS", *(cls.__name__ for cls in BUILDERS.values())]
