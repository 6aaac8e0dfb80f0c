"""PredRNN (v1), PredRNN-v2 and the action-conditioned v2 in pure JAX/Equinox.

Array shapes are annotated with jaxtyping, channels-last, with one set of dimension names:

- `batch`, `time` (frames of a clip), `steps` (sampling-mask steps), `leads` (forecast frames);
- `height width channels`: image space, `channels` the image channels; `cin` where action
  maps may follow the image channels (action models), `actions` for those maps alone;
- `hp wp cp`: the patched grid (`height / p`, `width / p`) and `p * p * channels`;
  `cpin` and `ap` are the patched `cin` and `actions`;
- `hr wr hidden`: the grid the recurrent cells run on (`hp wp`, or 4x smaller for action
  models) and the hidden channels;
- `rows cols`, `k`, `cin cout`: the generic convolution primitives in `model.layers`.
"""
