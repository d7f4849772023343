"""Device input (trainers/device_input.py): the index stream, the feed and the placement rule.

The end-to-end runs (mirrored vs one device, resume after SIGKILL, 2 workers)
are in test_trainer.py and test_multi_worker.py, parametrized over --input.
"""

import numpy as np
import pytest
import tensorflow as tf

from trainers import data, device_input

N, BATCH, STEPS = 40, 8, 4  # 32 of the 40 examples trained per epoch


def stream(pipelines=1, replicas=1, first_epoch=0, epochs=2, seed=5):
  """[(pipeline, index, seed, label)] per element, pipeline by pipeline, `epochs` epochs."""
  labels = np.arange(N, dtype=np.int32) % 7
  out = []
  for pipeline in range(pipelines):
    context = tf.distribute.InputContext(num_input_pipelines=pipelines,
                                         input_pipeline_id=pipeline,
                                         num_replicas_in_sync=replicas)
    ds = device_input.index_dataset(labels, global_batch_size=BATCH, steps_per_epoch=STEPS,
                                    num_replicas=replicas, seed=seed, first_epoch=first_epoch,
                                    input_context=context)
    per_epoch = STEPS * replicas // pipelines
    for x, y in ds.take(per_epoch * epochs):
      out.append((pipeline, x["index"].numpy(), x["seed"].numpy(), y.numpy()))
  return out


def global_batches(elements, replicas, pipelines):
  """The global batch of each step, put back together from the replicas' slices."""
  local = replicas // pipelines
  by_pipeline = [[e for e in elements if e[0] == p] for p in range(pipelines)]
  steps = len(by_pipeline[0]) // local
  return [np.concatenate([by_pipeline[p][s * local + r][1] for p in range(pipelines)
                          for r in range(local)]) for s in range(steps)]


def test_each_epoch_is_a_seeded_permutation_with_matching_labels():
  elements = stream(epochs=3)
  epochs = [np.concatenate([e[1] for e in elements[k * STEPS:(k + 1) * STEPS]])
            for k in range(3)]
  for order in epochs:
    assert len(order) == len(set(order.tolist())) == STEPS * BATCH  # no example twice
    assert set(order.tolist()) <= set(range(N))
  assert not np.array_equal(epochs[0], epochs[1])  # reshuffled every epoch
  for _, index, _, labels in elements:
    np.testing.assert_array_equal(labels, index % 7)
  again = stream(epochs=3)
  for a, b in zip(elements, again, strict=True):
    np.testing.assert_array_equal(a[1], b[1])  # the seed fixes the order
  other = stream(epochs=1, seed=6)
  assert not np.array_equal(other[0][1], elements[0][1])


def test_a_resumed_stream_continues_the_uninterrupted_one():
  full = stream(epochs=3)
  resumed = stream(first_epoch=1, epochs=2)
  for a, b in zip(full[STEPS:], resumed, strict=True):
    np.testing.assert_array_equal(a[1], b[1])
    np.testing.assert_array_equal(a[2], b[2])


@pytest.mark.parametrize("pipelines,replicas", [(1, 2), (2, 2), (2, 4), (1, 4)])
def test_replicas_together_see_the_single_device_batches(pipelines, replicas):
  """Mirrored (one pipeline, several replicas) and multi-worker (a pipeline per worker):
  each step's slices are disjoint and make up the one-device global batch."""
  single = global_batches(stream(), 1, 1)
  split = stream(pipelines, replicas)
  assert all(len(e[1]) == BATCH // replicas for e in split)
  together = global_batches(split, replicas, pipelines)
  assert len(together) == len(single)
  for a, b in zip(single, together, strict=True):
    np.testing.assert_array_equal(a, b)
  seeds = {tuple(e[2]) for e in split}
  assert len(seeds) == len(split)  # every replica and step augments differently


def test_bad_batch_split_is_refused():
  labels = np.zeros(N, np.int32)
  with pytest.raises(ValueError, match="do not split"):
    device_input.index_dataset(labels, global_batch_size=9, steps_per_epoch=1, num_replicas=2,
                               seed=0)
  with pytest.raises(ValueError, match="need more than"):
    device_input.index_dataset(labels, global_batch_size=BATCH, steps_per_epoch=6,
                               num_replicas=1, seed=0)


def test_feed_gathers_the_indexed_images_and_augments_like_the_host():
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (N, 48, 48, 1), dtype=np.uint8)
  resident = device_input.resident_images(tf.distribute.get_strategy(), images)
  index = tf.constant([7, 3, 31], tf.int32)
  seed = tf.constant([5, 9], tf.int64)
  plain = device_input.Feed(resident, image_size=48, channels=1, strength=0.0)
  np.testing.assert_allclose(plain({"index": index, "seed": seed}).numpy(),
                             images[[7, 3, 31]] / 255, atol=1e-6)
  feed = device_input.Feed(resident, image_size=96, channels=3, strength=1.0)
  fed = feed({"index": index, "seed": seed}).numpy()
  host = data.augment_for_training(tf.constant(images[[7, 3, 31]]), seed, 1.0, 96, 3).numpy()
  assert fed.shape == (3, 96, 96, 3)
  np.testing.assert_array_equal(fed, host)
  unaugmented = data.preprocess_images(tf.constant(images[[7, 3, 31]]), 96, 3).numpy()
  assert np.abs(fed - unaugmented).mean() > 0.02  # it did augment


def test_placement_rule(monkeypatch):
  strategy = tf.distribute.get_strategy()
  memory = {"bytes": 8 * 2**30}
  monkeypatch.setattr(device_input, "device_memory_bytes",
                      lambda _: (memory["bytes"], "GPU"))
  fer_train = 28709
  assert device_input.choose("host", strategy, fer_train).where == "host"
  chosen = device_input.choose("auto", strategy, fer_train)
  assert chosen.where == "device" and "63.1 MiB" in chosen.reason
  memory["bytes"] = 500 * 2**20  # 63 MiB is more than 10% of 500 MiB
  chosen = device_input.choose("auto", strategy, fer_train)
  assert chosen.where == "host" and "more than 10%" in chosen.reason
  assert device_input.choose("device", strategy, fer_train).where == "device"  # asked for
  service = "grpc://127.0.0.1:5000"
  assert device_input.choose("auto", strategy, fer_train, service).where == "host"
  with pytest.raises(ValueError, match="--input=host"):
    device_input.choose("device", strategy, fer_train, service)


def test_host_memory_is_the_cpu_device_memory():
  memory, kind = device_input.device_memory_bytes(tf.distribute.get_strategy())
  assert kind.startswith("CPU") and memory > 2**30
