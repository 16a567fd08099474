import { pageHeading } from './ui.js';
export default { title: 'replays', render(root) { root.append(pageHeading('replays')); } };
