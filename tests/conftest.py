import os

# Keep the suite light on the 2-core CI machine and independent of the user's runs/ folder.
os.environ.setdefault("MPLBACKEND", "Agg")

import torch  # noqa: E402

torch.set_num_threads(1)
