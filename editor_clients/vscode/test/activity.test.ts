import assert from "node:assert/strict";
import { test } from "node:test";

import { Activity, type ActivityState } from "../src/activity";
import { SLOW_MS } from "../src/format";

function tracked(): { activity: Activity; states: ActivityState[] } {
  const states: ActivityState[] = [];
  return { activity: new Activity((state) => states.push(state)), states };
}

test("progress work lives from begin to end; only reports set the percentage", () => {
  const { activity, states } = tracked();
  assert.equal(activity.progress("a", { kind: "begin", title: "DeepFIM: loading model", percentage: 0 }), false);
  activity.progress("b", { kind: "begin", title: "DeepFIM: indexing shop", percentage: 0 });
  assert.deepEqual(activity.state.work, [{ title: "loading model" }, { title: "indexing shop" }]);
  activity.progress("b", { kind: "report", message: "3/10 files", percentage: 30 });
  assert.deepEqual(activity.state.work[1], { title: "indexing shop", percentage: 30 });
  assert.equal(activity.progress("a", { kind: "end", message: "model ready" }), true);
  assert.deepEqual(activity.state.work, [{ title: "indexing shop", percentage: 30 }]);
  assert.equal(states.length, 4);
  activity.clear();
  assert.deepEqual(activity.state, { work: [], busy: undefined });
});

test("requests in flight: expert at once, automatic ones only once slow", async () => {
  const { activity } = tracked();
  const expertDone = activity.requestStarted(true);
  const autoDone = activity.requestStarted(false);
  assert.deepEqual(activity.state.busy, { expert: true, slow: false });
  expertDone();
  assert.deepEqual(activity.state.busy, { expert: false, slow: false });
  await new Promise((resolve) => setTimeout(resolve, SLOW_MS + 100));
  assert.deepEqual(activity.state.busy, { expert: false, slow: true });
  autoDone();
  autoDone(); // a second call changes nothing
  assert.equal(activity.state.busy, undefined);
});
