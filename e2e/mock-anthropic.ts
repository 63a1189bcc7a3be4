// A mock of the Anthropic Messages API on 127.0.0.1, for running the real Claude Code CLI
// offline (a port of tests/api/mock_anthropic.rs). Every `POST /v1/messages` is answered with one
// text block that quotes the last user message, streamed as server-sent events when asked.
import { createServer, type IncomingMessage, type Server } from 'node:http';

export const REPLY_PREFIX = 'MOCK-REPLY';
/** Words in a prompt that make the mock wait 3 s before it answers. */
export const SLOW_TRIGGER = 'take your time';

interface Seen { apiKey: string | null; body: Record<string, unknown> }
type Block = { type?: string; text?: string };
type Message = { role?: string; content?: string | Block[] };

function lastUserText(body: { messages?: Message[] }): string {
  const message = [...(body.messages ?? [])].reverse().find((m) => m.role === 'user');
  if (!message) return '';
  if (typeof message.content === 'string') return message.content;
  // The user's own words: the last text block that is not a tagged note from Claude Code.
  const texts = (message.content ?? []).filter((b) => b.type === 'text' && typeof b.text === 'string').map((b) => b.text!);
  return texts.reverse().find((t) => !t.trimStart().startsWith('<')) ?? '';
}

function sse(events: [string, unknown][]): string {
  return events.map(([event, data]) => `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`).join('');
}

let replies = 0;
/** Each reply's own id, as the real API gives (transcript readers tell replies apart by it). */
function messageId(): string {
  replies += 1;
  return `msg_mock_${replies}`;
}

export class MockAnthropic {
  readonly seen: Seen[] = [];
  private calls = 0;
  url = '';
  private server: Server | null = null;

  async start(): Promise<void> {
    this.server = createServer((req, res) => void this.handle(req, res));
    await new Promise<void>((ok) => this.server!.listen(0, '127.0.0.1', ok));
    const address = this.server.address() as { port: number };
    this.url = `http://127.0.0.1:${address.port}`;
  }

  async stop(): Promise<void> {
    await new Promise((ok) => this.server?.close(ok));
  }

  private async handle(req: IncomingMessage, res: import('node:http').ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    if (req.method !== 'POST' || !req.url?.startsWith('/v1/messages')) {
      res.writeHead(404, { 'content-type': 'application/json' }).end('{"type":"error","error":{"type":"not_found_error","message":"mock"}}');
      return;
    }
    let body: Record<string, unknown>;
    try {
      body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    } catch {
      res.writeHead(400).end('bad json');
      return;
    }
    this.seen.push({ apiKey: (req.headers['x-api-key'] as string) ?? null, body });
    // A prompt that asks the mock to take its time keeps the turn going for a while (a turn to cut short).
    if (JSON.stringify(body.messages ?? []).includes(SLOW_TRIGGER)) await new Promise((ok) => setTimeout(ok, 3000));
    const model = typeof body.model === 'string' ? body.model : 'claude-sonnet-4-5-20250929';
    const asked = lastUserText(body as { messages?: Message[] });
    // `MOCK-TOOL:<Name> <JSON input>` in a prompt gets a call of that tool (Claude Code asks
    // before a Write); a tool's result alone carries no words, so it gets a plain reply.
    const call = body.stream === true ? asked.match(/MOCK-TOOL:(\w+) (\{.*\})/s) : null;
    if (call) {
      const id = `toolu_mock_${++this.calls}`;
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' }).end(sse([
        ['message_start', { type: 'message_start', message: { id: `msg_${id}`, type: 'message', role: 'assistant', model, content: [], stop_reason: null, stop_sequence: null, usage: { input_tokens: 12, output_tokens: 8 } } }],
        ['content_block_start', { type: 'content_block_start', index: 0, content_block: { type: 'tool_use', id, name: call[1], input: {} } }],
        ['content_block_delta', { type: 'content_block_delta', index: 0, delta: { type: 'input_json_delta', partial_json: call[2] } }],
        ['content_block_stop', { type: 'content_block_stop', index: 0 }],
        ['message_delta', { type: 'message_delta', delta: { stop_reason: 'tool_use', stop_sequence: null }, usage: { output_tokens: 20 } }],
        ['message_stop', { type: 'message_stop' }],
      ]));
      return;
    }
    const text = `${REPLY_PREFIX}: I read "${[...asked].slice(0, 80).join('').replace(/\n/g, ' ')}"`;
    const usage = { input_tokens: 12, output_tokens: 8, cache_creation_input_tokens: 0, cache_read_input_tokens: 0 };
    if (body.stream !== true) {
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({
        id: messageId(), type: 'message', role: 'assistant', model, content: [{ type: 'text', text }],
        stop_reason: 'end_turn', stop_sequence: null, usage,
      }));
      return;
    }
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' }).end(sse([
      ['message_start', { type: 'message_start', message: { id: messageId(), type: 'message', role: 'assistant', model, content: [], stop_reason: null, stop_sequence: null, usage } }],
      ['content_block_start', { type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } }],
      ['ping', { type: 'ping' }],
      ['content_block_delta', { type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text } }],
      ['content_block_stop', { type: 'content_block_stop', index: 0 }],
      ['message_delta', { type: 'message_delta', delta: { stop_reason: 'end_turn', stop_sequence: null }, usage: { output_tokens: 8 } }],
      ['message_stop', { type: 'message_stop' }],
    ]));
  }
}
