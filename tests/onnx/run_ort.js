// Runs ONNX models in ONNX Runtime (onnxruntime-node) for tests/onnx/check_export.py.
// Usage: node run_ort.js MODULE_DIR JOBS.json
// JOBS.json: [{"model": path, "input": raw float32 file, "dims": [N, C, H, W],
//              "output": raw float32 file to write}]; prints {"dims": [...]} per job, one JSON
// array on stdout. Exits non-zero on any failure.
'use strict';
const fs = require('fs');
const path = require('path');

async function main() {
    const [moduleDir, jobsPath] = process.argv.slice(2);
    const ort = require(path.join(moduleDir, 'node_modules', 'onnxruntime-node'));
    const jobs = JSON.parse(fs.readFileSync(jobsPath, 'utf8'));
    const sessions = new Map();
    const results = [];
    for (const job of jobs) {
        let session = sessions.get(job.model);
        if (!session) {
            // One thread: deterministic, and the machine is shared.
            session = await ort.InferenceSession.create(job.model, {
                intraOpNumThreads: 1, interOpNumThreads: 1, graphOptimizationLevel: 'all'});
            sessions.set(job.model, session);
        }
        const raw = fs.readFileSync(job.input);
        const data = new Float32Array(raw.buffer, raw.byteOffset, raw.byteLength / 4);
        const out = await session.run({input: new ort.Tensor('float32', data, job.dims)});
        const y = out.output;
        fs.writeFileSync(job.output, Buffer.from(y.data.buffer, y.data.byteOffset, y.data.byteLength));
        results.push({dims: y.dims.map(Number), inputs: session.inputNames, outputs: session.outputNames});
    }
    process.stdout.write(JSON.stringify(results));
}

main().catch((e) => { console.error('run_ort: ' + (e && e.stack || e)); process.exit(1); });
